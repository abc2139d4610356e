{#- The event-cleaning rule, one for every template: an event counts only if its identity is set,
    its type is one of the known types and its time lies in the data window (a predicate). -#}
ecid IS NOT NULL
      AND "eventType" IN ({{ known_types }})
      AND "timestamp" >= {{ window_start }} AND "timestamp" < {{ window_end }}
