-- Pearson correlation of each person's count of each event type with having converted, over the
-- people with events (the original misnamed two types, which came out empty: this does not).
WITH per_person AS (
    SELECT
        ecid,
        {%- for type in types %}
        count(*) FILTER (WHERE "eventType" = {{ type.literal }}) AS {{ type.column }},
        {%- endfor %}
        CASE WHEN count(*) FILTER (WHERE "eventType" = {{ conversion_event }}) > 0 THEN 1.0 ELSE 0.0 END AS converted
    FROM {{ events }}
    WHERE ecid IS NOT NULL
    GROUP BY ecid
)
{%- for type in types %}
SELECT {{ type.literal }} AS event_type, corr(CAST({{ type.column }} AS DOUBLE), converted) AS correlation
FROM per_person
{%- if not loop.last %}
UNION ALL
{%- endif %}
{%- endfor %}
