-- Point-in-time features per person: the original notebooks' features, built without leakage.
-- Rendered by aep_propensity.sql.render_template: every template value below is a quoted
-- identifier or a typed literal built from validated parameters, never raw text.
-- Events count only if their identity is set, their type is known and their time lies in the
-- data window (the data-quality report counts the rest). Features use events in
-- [lookback_start, cutoff); training keeps people not converted before the cutoff and labels a
-- conversion in [cutoff, horizon_end); scoring keeps everyone and flags who already converted.
-- Written so that every engine computes the same types and values: time differences as whole
-- microseconds (date_diff, exact, where epoch() is whole seconds on Spark), days between dates by
-- date_diff (a date minus a date is an INTERVAL on Spark), and explicit CASTs to DOUBLE and BIGINT
-- (a division by a decimal literal is a DECIMAL on Spark).
WITH clean_events AS (
    SELECT ecid, "eventType" AS event_type, "timestamp" AS ts
    FROM {{ events }}
    WHERE {% include "_clean_events.sql" %}
),
history AS (
    SELECT * FROM clean_events WHERE ts >= {{ lookback_start }} AND ts < {{ cutoff }}
),
converted_before AS (
    SELECT DISTINCT ecid FROM clean_events WHERE event_type = {{ conversion_event }} AND ts < {{ cutoff }}
),
{%- if training %}
converted_in_horizon AS (
    SELECT DISTINCT ecid FROM clean_events
    WHERE event_type = {{ conversion_event }} AND ts >= {{ cutoff }} AND ts < {{ horizon_end }}
),
{%- endif %}
activity AS (
    SELECT
        ecid,
        {%- for type in types %}
        count(*) FILTER (WHERE event_type = {{ type.literal }}) AS {{ type.count }},
        {%- for window in recent %}
        count(*) FILTER (WHERE event_type = {{ type.literal }} AND ts >= {{ window.start }}) AS {{ type.recent[loop.index0] }},
        {%- endfor %}
        max(ts) FILTER (WHERE event_type = {{ type.literal }}) AS {{ type.last_seen }},
        {%- endfor %}
        count(*) AS n_events,
        count(DISTINCT CAST(ts AS DATE)) AS active_days
    FROM history
    GROUP BY ecid
)
SELECT
    p.ecid,
    {%- for type in types %}
    coalesce(a.{{ type.count }}, 0) AS {{ type.count }},
    {%- for window in recent %}
    coalesce(a.{{ type.recent[loop.index0] }}, 0) AS {{ type.recent[loop.index0] }},
    {%- endfor %}
    coalesce(
        CAST(date_diff('microsecond', a.{{ type.last_seen }}, {{ cutoff }}) AS DOUBLE) / 86400000000,
        CAST({{ no_event_days }} AS DOUBLE)
    ) AS {{ type.days_since }},
    {%- endfor %}
    {%- for rate in rates %}
    coalesce(CAST(a.{{ rate.numerator }} AS DOUBLE) / NULLIF(a.{{ rate.denominator }}, 0), 0.0) AS {{ rate.name }},
    {%- endfor %}
    coalesce(a.n_events, 0) AS n_events,
    coalesce(a.active_days, 0) AS active_days,
    p.loyalty_tier,
    p.loyalty_points,
    CAST(date_diff('day', p.loyalty_join_date, {{ cutoff_date }}) AS BIGINT) AS tenure_days,
    {{ cutoff_year }} - p.birth_year AS age,
    p.gender,
    p.state,
    {%- if training %}
    CASE WHEN h.ecid IS NULL THEN 0 ELSE 1 END AS label
    {%- else %}
    CASE WHEN c.ecid IS NULL THEN FALSE ELSE TRUE END AS converted
    {%- endif %}
FROM {{ profiles }} AS p
LEFT JOIN activity AS a ON a.ecid = p.ecid
LEFT JOIN converted_before AS c ON c.ecid = p.ecid
{%- if training %}
LEFT JOIN converted_in_horizon AS h ON h.ecid = p.ecid
WHERE c.ecid IS NULL
{%- endif %}
