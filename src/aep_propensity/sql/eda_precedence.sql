-- Which event types precede which (the original's co-occurrence heatmap): for each pair, the
-- people with an event of first_type at or before an event of later_type, and their share of the
-- people with first_type. Computed from each person's first and last time per type, which is
-- equivalent to the original's self-join on events and much smaller.
WITH spans AS (
    SELECT ecid, "eventType" AS event_type, min("timestamp") AS first_ts, max("timestamp") AS last_ts
    FROM {{ events }}
    WHERE ecid IS NOT NULL
    GROUP BY ecid, "eventType"
),
pairs AS (
    SELECT a.event_type AS first_type, b.event_type AS later_type, count(*) AS people
    FROM spans AS a
    JOIN spans AS b ON a.ecid = b.ecid AND a.first_ts <= b.last_ts
    GROUP BY a.event_type, b.event_type
),
totals AS (
    SELECT event_type, count(*) AS people FROM spans GROUP BY event_type
)
SELECT p.first_type, p.later_type, p.people, CAST(p.people AS DOUBLE) / t.people AS share
FROM pairs AS p
JOIN totals AS t ON t.event_type = p.first_type
ORDER BY p.first_type, p.later_type
