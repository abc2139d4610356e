-- Rows and distinct people (the original counted distinct event ids as "users": this does not).
SELECT
    (SELECT count(*) FROM {{ events }}) AS events,
    (SELECT count(DISTINCT ecid) FROM {{ events }}) AS people_with_events,
    (SELECT count(*) FROM {{ profiles }}) AS profiles,
    (SELECT count(DISTINCT "eventType") FROM {{ events }}) AS event_types,
    (SELECT min("timestamp") FROM {{ events }}) AS first_event,
    (SELECT max("timestamp") FROM {{ events }}) AS last_event
