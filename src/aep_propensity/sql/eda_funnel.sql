-- The email-to-subscription funnel: people and events at each stage.
SELECT s.stage, s.event_type, coalesce(c.people, 0) AS people, coalesce(c.events, 0) AS events
FROM (VALUES {% for stage in stages %}({{ loop.index }}, {{ stage }}){% if not loop.last %}, {% endif %}{% endfor %})
    AS s (stage, event_type)
LEFT JOIN (
    SELECT "eventType" AS event_type, count(DISTINCT ecid) AS people, count(*) AS events
    FROM {{ events }}
    GROUP BY "eventType"
) AS c ON c.event_type = s.event_type
ORDER BY s.stage
