-- Each person's events strictly before a time: what an observer knows at the cutoff.
SELECT ecid, "eventType", "timestamp"
FROM {{ events }}
WHERE ecid IS NOT NULL AND "timestamp" < {{ before }}
