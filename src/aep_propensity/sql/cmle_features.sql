-- The original CMLE feature set (the feature step of Adobe's "AI/ML data pipeline enrichment"
-- notebooks): running counts and minutes since the last event of each type, over each person's events in time order. Training keeps one row per
-- person: the conversion event for converters (which leaks: it is cut at the conversion) and one
-- random event, chosen by a seeded hash, for the others. Scoring keeps each person's latest event.
-- TIME_BETWEEN_PREVIOUS_MATCH is written portably: the running max of matching timestamps is the
-- last match, the current row included (so the matching row itself gives 0, as in the original).
-- Minutes are whole minutes of the exact difference in microseconds (date_diff; epoch() is whole
-- seconds on Spark), so every engine floors the same number.
WITH clean_events AS (
    SELECT "_id" AS event_id, ecid, "eventType" AS event_type, "timestamp" AS ts
    FROM {{ events }}
    WHERE {% include "_clean_events.sql" %}
),
running AS (
    SELECT
        ecid,
        event_type,
        ts,
        CAST(sum(CASE WHEN event_type = {{ conversion_event }} THEN 1 ELSE 0 END) OVER (PARTITION BY ecid) AS BIGINT)
            AS conversions,
        {%- for feature in counts %}
        CAST(sum(CASE WHEN event_type = {{ feature.literal }} THEN 1 ELSE 0 END)
            OVER (PARTITION BY ecid ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT)
            AS {{ feature.name }},
        {%- endfor %}
        {%- for feature in recency %}
        CAST(floor(CAST(date_diff('microsecond', max(CASE WHEN event_type = {{ feature.literal }} THEN ts END)
            OVER (PARTITION BY ecid ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), ts)
            AS DOUBLE) / 60000000) AS BIGINT) AS {{ feature.name }},
        {%- endfor %}
        {%- if training %}
        row_number() OVER (PARTITION BY ecid ORDER BY md5(event_id || {{ seed }}), event_id) AS pick
        {%- else %}
        row_number() OVER (PARTITION BY ecid ORDER BY ts DESC, event_id DESC) AS pick
        {%- endif %}
    FROM clean_events
)
SELECT
    ecid,
    event_type,
    ts,
    {%- for feature in counts %}
    {{ feature.name }},
    {%- endfor %}
    {%- for feature in recency %}
    {{ feature.name }},
    {%- endfor %}
    {%- if training %}
    CASE WHEN conversions > 0 THEN 1 ELSE 0 END AS label
FROM running
WHERE (conversions > 0 AND event_type = {{ conversion_event }}) OR (conversions = 0 AND pick = 1)
    {%- else %}
    conversions > 0 AS converted
FROM running
WHERE pick = 1
    {%- endif %}
