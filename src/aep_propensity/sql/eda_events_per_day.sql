-- Events per day and type.
SELECT CAST("timestamp" AS DATE) AS day, "eventType" AS event_type, count(*) AS events
FROM {{ events }}
GROUP BY CAST("timestamp" AS DATE), "eventType"
ORDER BY day, event_type
