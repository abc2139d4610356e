-- Every profile with its latest scoring run's score (a view: always current with the scores).
-- The latest run is the one with the newest scored_at; a failed run ingests nothing, so it can
-- never be the latest. Older runs stay in the scores table as history.
WITH latest_run AS (
    SELECT run_id FROM {{ scores }} ORDER BY scored_at DESC, run_id DESC LIMIT 1
)
SELECT
    p.*,
    s.score AS propensity,
    s.decile AS propensity_decile,
    coalesce(s.converted, FALSE) AS converted,
    s.model_id,
    s.run_id,
    s.scored_at
FROM {{ profiles }} AS p
LEFT JOIN {{ scores }} AS s ON s.ecid = p.ecid AND s.run_id IN (SELECT run_id FROM latest_run)
