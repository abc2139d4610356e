-- Events the features exclude, by reason (an event may have several): documented, never silent.
SELECT
    count(*) AS events,
    count(*) FILTER (WHERE ecid IS NULL) AS null_identity,
    count(*) FILTER (WHERE "eventType" IS NULL OR "eventType" NOT IN ({{ known_types }})) AS unknown_event_type,
    count(*) FILTER (WHERE "timestamp" IS NULL OR "timestamp" < {{ window_start }} OR "timestamp" >= {{ window_end }})
        AS outside_window,
    count(*) FILTER (WHERE NOT coalesce({% include "_clean_events.sql" %}, false)) AS excluded
FROM {{ events }}
