"""Nodes of the featurization pipeline: pure functions that render SQL from table handles and parameters.

The platform runs what they return: each output dataset's save materialises the SQL on the
platform (CTAS), so no rows pass through Python and lineage stays visible in kedro-viz.
Plot nodes take the small EDA result tables as DataFrames and return matplotlib figures (built
without pyplot, so no global state or display backend is involved).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
from matplotlib.figure import Figure

from aep_propensity.parameters import TimeDesign
from aep_propensity.platform import Sql, TableHandle, identifier, literal, literal_list
from aep_propensity.sql import render_template

from .params import FeaturizationParams

EVENT_COLUMNS = ("_id", "ecid", "eventType", "timestamp")
PROFILE_COLUMNS = ("ecid", "loyalty_tier", "loyalty_points", "loyalty_join_date", "birth_year", "gender", "state")
FUNNEL = ("directMarketing.emailSent", "directMarketing.emailOpened", "directMarketing.emailClicked")

# Ratios of counts over the lookback: name -> (numerator type, denominator type).
RATES = {
    "email_open_rate": ("directMarketing.emailOpened", "directMarketing.emailSent"),
    "email_click_rate": ("directMarketing.emailClicked", "directMarketing.emailOpened"),
    "ad_click_rate": ("advertising.clicks", "advertising.impressions"),
    "proposition_interact_rate": ("decisioning.propositionInteract", "decisioning.propositionDisplay"),
}

# The original's 14 features, with its propositionDismiss bug fixed.
CMLE_COUNTS = {
    "emails_received": "directMarketing.emailSent",
    "emails_opened": "directMarketing.emailOpened",
    "emails_clicked": "directMarketing.emailClicked",
    "products_viewed": "commerce.productViews",
    "proposition_interacts": "decisioning.propositionInteract",
    "proposition_dismissed": "decisioning.propositionDismiss",
    "web_link_clicks": "web.webinteraction.linkClicks",
}
CMLE_RECENCY = {
    "minutes_since_email_sent": "directMarketing.emailSent",
    "minutes_since_email_opened": "directMarketing.emailOpened",
    "minutes_since_email_click": "directMarketing.emailClicked",
    "minutes_since_product_view": "commerce.productViews",
    "minutes_since_proposition_interact": "decisioning.propositionInteract",
    "minutes_since_proposition_dismiss": "decisioning.propositionDismiss",
    "minutes_since_link_click": "web.webinteraction.linkClicks",
}


def type_slug(event_type: str) -> str:
    """A column-name fragment for an event type: its last part in snake case (``emailSent`` -> ``email_sent``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event_type.rsplit(".", 1)[-1]).lower()


def _require_columns(handle: TableHandle, columns: tuple[str, ...]) -> None:
    """Raise naming the first column the table lacks."""
    missing = [name for name in columns if name not in handle.columns]
    if missing:
        raise ValueError(f"table {handle.name!r} has no column {missing[0]!r} (it has {list(handle.columns)})")


@dataclass(frozen=True)
class _TypeColumns:
    """The feature columns of one event type."""

    literal: Sql
    count: Sql
    recent: tuple[Sql, ...]
    last_seen: Sql
    days_since: Sql


def _common_values(events: TableHandle, params: FeaturizationParams, time: TimeDesign) -> dict[str, Sql]:
    """Template values shared by the feature and data-quality queries."""
    _require_columns(events, EVENT_COLUMNS)
    return {
        "events": identifier(events.name),
        "known_types": literal_list([*params.event_types, params.conversion_event]),
        "conversion_event": literal(params.conversion_event),
        "window_start": literal(time.window.start),
        "window_end": literal(time.window.end),
    }


def _point_in_time_query(
    events: TableHandle, profiles: TableHandle, params: FeaturizationParams, time: TimeDesign, training: bool
) -> str:
    """The point-in-time feature query at the training cutoff (training) or the scoring time."""
    common = _common_values(events, params, time)
    _require_columns(profiles, PROFILE_COLUMNS)
    cutoff = time.training_cutoff if training else time.scoring_at
    slugs = [type_slug(name) for name in params.event_types]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"event_types give clashing column names: {slugs}")
    days = time.lookback_days
    if not all(0 < recent < days for recent in params.recent_days):
        raise ValueError(f"recent_days must each be between 1 and lookback_days - 1, got {params.recent_days}")
    types = [
        _TypeColumns(
            literal=literal(name),
            count=identifier(f"n_{slug}_{days}d"),
            recent=tuple(identifier(f"n_{slug}_{recent}d") for recent in params.recent_days),
            last_seen=identifier(f"last_{slug}"),
            days_since=identifier(f"days_since_{slug}"),
        )
        for name, slug in zip(params.event_types, slugs, strict=True)
    ]
    rates = [
        {
            "name": identifier(name),
            "numerator": identifier(f"n_{type_slug(top)}_{days}d"),
            "denominator": identifier(f"n_{type_slug(bottom)}_{days}d"),
        }
        for name, (top, bottom) in RATES.items()
        if top in params.event_types and bottom in params.event_types
    ]
    return render_template(
        "point_in_time_features.sql",
        **common,
        profiles=identifier(profiles.name),
        training=training,
        types=types,
        recent=[{"start": literal(cutoff - timedelta(days=recent))} for recent in params.recent_days],
        rates=rates,
        lookback_start=literal(cutoff - time.lookback),
        cutoff=literal(cutoff),
        cutoff_date=literal(cutoff.date()),
        cutoff_year=cutoff.year,
        horizon_end=literal(cutoff + time.horizon),
        no_event_days=days,
    )


def _cmle_query(events: TableHandle, params: FeaturizationParams, time: TimeDesign, training: bool) -> str:
    """The original's running-window feature query (training rows or each person's latest event)."""
    return render_template(
        "cmle_features.sql",
        **_common_values(events, params, time),
        training=training,
        seed=literal(str(params.seed)),
        counts=[{"name": identifier(name), "literal": literal(kind)} for name, kind in CMLE_COUNTS.items()],
        recency=[{"name": identifier(name), "literal": literal(kind)} for name, kind in CMLE_RECENCY.items()],
    )


def build_training_features(
    events: TableHandle, profiles: TableHandle, params: FeaturizationParams, time: TimeDesign
) -> str:
    """SQL for the training table: features at the cutoff and the label (or the cmle set's rows)."""
    if params.feature_set == "cmle":
        return _cmle_query(events, params, time, training=True)
    return _point_in_time_query(events, profiles, params, time, training=True)


def build_scoring_features(
    events: TableHandle, profiles: TableHandle, params: FeaturizationParams, time: TimeDesign
) -> str:
    """SQL for the scoring table: the same features at the scoring time for every profile, converted flagged."""
    if params.feature_set == "cmle":
        return _cmle_query(events, params, time, training=False)
    return _point_in_time_query(events, profiles, params, time, training=False)


def report_data_quality(events: TableHandle, params: FeaturizationParams, time: TimeDesign) -> str:
    """SQL counting the events the features exclude, by reason."""
    return render_template("data_quality.sql", **_common_values(events, params, time))


def select_training_export(training_features: TableHandle) -> TableHandle:
    """The feature table to export as the training set; refuses an empty or unlabelled one."""
    _require_columns(training_features, ("ecid", "label"))
    if training_features.row_count == 0:
        raise ValueError(f"table {training_features.name!r} is empty: nothing to train on")
    return training_features


# -- exploration (EDA) -------------------------------------------------------------------------


def explore_overview(events: TableHandle, profiles: TableHandle) -> str:
    """SQL: rows, distinct people, profiles and the time span."""
    return render_template("eda_overview.sql", events=identifier(events.name), profiles=identifier(profiles.name))


def explore_funnel(events: TableHandle) -> str:
    """SQL: people and events at each stage of emailSent -> emailOpened -> emailClicked -> formFilledOut."""
    stages = [literal(name) for name in (*FUNNEL, "web.formFilledOut")]
    return render_template("eda_funnel.sql", events=identifier(events.name), stages=stages)


def explore_events_per_day(events: TableHandle) -> str:
    """SQL: events per day and type."""
    return render_template("eda_events_per_day.sql", events=identifier(events.name))


def explore_precedence(events: TableHandle) -> str:
    """SQL: for each pair of types, the share of people with the first at or before the second."""
    return render_template("eda_precedence.sql", events=identifier(events.name))


def explore_correlation(events: TableHandle, params: FeaturizationParams) -> str:
    """SQL: the correlation of each person's per-type counts with converting."""
    types = [{"literal": literal(name), "column": identifier(f"n_{type_slug(name)}")} for name in params.event_types]
    return render_template(
        "eda_correlation.sql",
        events=identifier(events.name),
        types=types,
        conversion_event=literal(params.conversion_event),
    )


def plot_funnel(funnel: pd.DataFrame) -> Figure:
    """A horizontal bar chart of people per funnel stage."""
    figure = Figure(figsize=(7, 3.5))
    axes = figure.subplots()
    ordered = funnel.sort_values("stage", ascending=False)
    axes.barh(ordered["event_type"], ordered["people"], color="#3b6ea8")
    for y, people in enumerate(ordered["people"]):
        axes.annotate(f"{people:,}", (people, y), xytext=(3, 0), textcoords="offset points", va="center")
    axes.set_xlabel("people")
    axes.set_title("From email to subscription")
    figure.tight_layout()
    return figure


def plot_events_per_day(events_per_day: pd.DataFrame) -> Figure:
    """Daily events per type, one line each."""
    figure = Figure(figsize=(9, 4.5))
    axes = figure.subplots()
    table = events_per_day.pivot_table(index="day", columns="event_type", values="events", fill_value=0)
    table.plot(ax=axes, logy=True, linewidth=1)
    axes.set_ylabel("events per day (log)")
    axes.legend(fontsize=6, ncol=2)
    axes.set_title("Events per day and type")
    figure.tight_layout()
    return figure


def plot_precedence(precedence: pd.DataFrame) -> Figure:
    """The precedence heatmap: share of people with the row's type at or before the column's type."""
    table = precedence.pivot_table(index="first_type", columns="later_type", values="share", fill_value=0.0)
    figure = Figure(figsize=(8, 7))
    axes = figure.subplots()
    image = axes.imshow(table.to_numpy(), cmap="viridis", vmin=0, vmax=1)
    axes.set_xticks(range(len(table.columns)), [type_slug(name) for name in table.columns], rotation=90, fontsize=7)
    axes.set_yticks(range(len(table.index)), [type_slug(name) for name in table.index], fontsize=7)
    axes.set_xlabel("later event type")
    axes.set_ylabel("first event type")
    figure.colorbar(image, ax=axes, label="share of people with the first type")
    axes.set_title("Which events precede which")
    figure.tight_layout()
    return figure


def plot_correlation(correlation: pd.DataFrame) -> Figure:
    """Bars of each event type's count correlation with converting."""
    ordered = correlation.sort_values("correlation")
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    axes.barh([type_slug(name) for name in ordered["event_type"]], ordered["correlation"], color="#a8563b")
    axes.set_xlabel("Pearson correlation with converting")
    axes.set_title("Event counts and conversion")
    figure.tight_layout()
    return figure
