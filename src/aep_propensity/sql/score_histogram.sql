-- Scored profiles per score bin: bin k holds scores in [k / bins, (k + 1) / bins); a score of
-- exactly 1 is bin `bins`. People already converted have no score and are not counted.
SELECT CAST(floor(propensity * {{ bins }}) AS BIGINT) AS bin, count(*) AS people
FROM {{ profiles }}
WHERE propensity IS NOT NULL
GROUP BY CAST(floor(propensity * {{ bins }}) AS BIGINT)
ORDER BY bin
