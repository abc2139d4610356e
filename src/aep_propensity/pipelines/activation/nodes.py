"""Nodes of the activation pipeline: reach analysis, audience definitions, activation requests, the report.

Side effects (upserting and evaluating audiences, delivering them) happen in the datasets that the
audience definitions and activation requests are saved to; these nodes only decide what to ask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from aep_propensity.platform import ActivationRequest, AudienceDefinition, TableHandle, identifier
from aep_propensity.sql import render_template

from .params import ActivationParams


@dataclass(frozen=True)
class ScoreBand:
    """An audience that is a band of scores, ``lower <= propensity < upper`` (upper inclusive when closed)."""

    name: str
    lower: float | None
    upper: float | None
    upper_inclusive: bool = False


def explore_score_histogram(enriched_profiles: TableHandle, params: ActivationParams) -> str:
    """SQL: scored profiles per score bin (bin k holds scores in [k/bins, (k+1)/bins))."""
    return render_template(
        "score_histogram.sql", profiles=identifier(enriched_profiles.name), bins=params.histogram_bins
    )


def score_bands(histogram: pd.DataFrame, params: ActivationParams) -> list[ScoreBand]:
    """Every propensity-band audience: the tiers (thresholds read off the histogram) and the fixed ranges.

    Tiers take the highest scores first: each threshold is the lowest bin edge whose reach (people
    at or above it, minus the tiers above) stays within the tier's share of the scored profiles.
    """
    bins = params.histogram_bins
    counts = np.zeros(bins + 1, dtype=np.int64)
    counts[histogram["bin"].to_numpy()] = histogram["people"].to_numpy()
    at_or_above = np.cumsum(counts[::-1])[::-1]  # at_or_above[k] = people with score >= k / bins
    total = int(counts.sum())
    bands, upper_edge, taken = [], bins + 1, 0
    for name, share in (params.tiers or {}).items():
        taken += share * total
        edge = int(np.argmax(at_or_above <= taken + 1e-9)) if (at_or_above <= taken + 1e-9).any() else bins + 1
        edge = min(edge, upper_edge)
        bands.append(ScoreBand(name, edge / bins, None if upper_edge > bins else upper_edge / bins))
        upper_edge = edge
    if params.tiers and params.low_tier:
        bands.append(ScoreBand(params.low_tier, None, upper_edge / bins))
    bands += [ScoreBand(r.name, r.min, r.max, upper_inclusive=True) for r in params.ranges]
    return bands


def _band_rule(band: ScoreBand, tenant: str) -> str:
    """The PQL rule of a score band."""
    field = f"_{tenant}.propensity"
    parts = [f"{field} >= {band.lower:g}"] if band.lower is not None else []
    if band.upper is not None:
        parts.append(f"{field} {'<=' if band.upper_inclusive else '<'} {band.upper:g}")
    return " and ".join(parts) or f"{field} >= 0"


def define_audiences(histogram: pd.DataFrame, params: ActivationParams) -> list[AudienceDefinition]:
    """The audiences to upsert and evaluate: score bands as PQL rules, then the free-form rules."""
    definitions = [
        AudienceDefinition(band.name, _band_rule(band, params.tenant), f"Propensity band of {band.name}")
        for band in score_bands(histogram, params)
    ]
    return definitions + [AudienceDefinition(rule.name, rule.rule, rule.description) for rule in params.rules]


def predict_reach(histogram: pd.DataFrame, params: ActivationParams) -> pd.DataFrame:
    """Each score band's reach as the histogram predicts it (exact on bin edges)."""
    bins = params.histogram_bins
    counts = pd.Series(histogram["people"].to_numpy(), index=histogram["bin"].to_numpy())
    rows = []
    for band in score_bands(histogram, params):
        low = 0 if band.lower is None else int(round(band.lower * bins))
        high = bins + 1 if band.upper is None else int(round(band.upper * bins))
        rows.append(
            {
                "audience": band.name,
                "lower": band.lower,
                "upper": band.upper,
                "predicted_reach": int(counts[(counts.index >= low) & (counts.index < high)].sum()),
            }
        )
    return pd.DataFrame(rows)


def reach_by_threshold(histogram: pd.DataFrame, params: ActivationParams) -> pd.DataFrame:
    """People at or above each score threshold (bin edge), and their share of the scored profiles."""
    bins = params.histogram_bins
    counts = np.zeros(bins + 1, dtype=np.int64)
    counts[histogram["bin"].to_numpy()] = histogram["people"].to_numpy()
    reach = np.cumsum(counts[::-1])[::-1]
    return pd.DataFrame(
        {"threshold": np.arange(bins + 1) / bins, "reach": reach, "share": reach / max(int(counts.sum()), 1)}
    )


def plot_reach(histogram: pd.DataFrame, params: ActivationParams) -> dict[str, Figure]:
    """The score histogram, reach by threshold, and the reach of every [from, to) band (the original's
    "propensity-reach topology", drawn as a heatmap)."""
    bins = params.histogram_bins
    counts = np.zeros(bins + 1, dtype=np.int64)
    counts[histogram["bin"].to_numpy()] = histogram["people"].to_numpy()
    edges = np.arange(bins + 1) / bins
    figures = {name: Figure(figsize=(6.5, 4.5)) for name in ("score_histogram", "reach_by_threshold", "reach_bands")}
    axes = figures["score_histogram"].subplots()
    axes.bar(edges, counts, width=1 / bins, align="edge", color="#3b6ea8")
    axes.set(xlabel="propensity", ylabel="profiles", title="Scores of the profiles not yet converted", yscale="log")
    table = reach_by_threshold(histogram, params)
    axes = figures["reach_by_threshold"].subplots()
    axes.plot(table["threshold"], table["reach"])
    for band in score_bands(histogram, params):
        if band.lower is not None:
            axes.axvline(band.lower, linestyle=":", color="grey")
            axes.annotate(band.name, (band.lower, table["reach"].max()), rotation=90, fontsize=7, va="top")
    axes.set(xlabel="propensity threshold", ylabel="profiles at or above", title="Reach by threshold", yscale="log")
    grid = np.linspace(0, 1, 21)
    cumulative = np.r_[0, np.cumsum(counts)]
    edges_index = np.clip(np.rint(grid * bins).astype(int), 0, bins + 1)
    surface = cumulative[edges_index][None, :] - cumulative[edges_index][:, None]
    surface = np.where(surface > 0, surface, np.nan)
    axes = figures["reach_bands"].subplots()
    image = axes.imshow(surface, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
    axes.set(xlabel="to (exclusive)", ylabel="from", title="Reach of the band [from, to)")
    figures["reach_bands"].colorbar(image, ax=axes, label="profiles")
    for figure in figures.values():
        figure.tight_layout()
    return {f"{name}.png": figure for name, figure in figures.items()}


def request_activation(audience_jobs: pd.DataFrame, params: ActivationParams) -> ActivationRequest:
    """Deliver the latest successful evaluation of every audience."""
    return ActivationRequest(tuple(audience_jobs["job_id"]), params.force)


def build_activation_report(
    audience_jobs: pd.DataFrame, reach: pd.DataFrame, *deliveries: pd.DataFrame
) -> pd.DataFrame:
    """Per audience and destination: members, files or requests, bytes, duration and status, from the
    ledger's records of this evaluation's deliveries, beside the reach the histogram predicted."""
    delivered = pd.concat(deliveries, ignore_index=True)
    delivered = delivered[delivered["job_id"].isin(audience_jobs["job_id"])]
    report = audience_jobs[["audience_name", "job_id", "members"]].merge(
        reach.rename(columns={"audience": "audience_name"})[["audience_name", "predicted_reach"]],
        on="audience_name",
        how="left",
    )
    report = report.merge(delivered.drop(columns=["audience_name", "members"]), on="job_id", how="left")
    report["duration_seconds"] = (
        pd.to_datetime(report["completed"]) - pd.to_datetime(report["started"])
    ).dt.total_seconds()
    columns = [
        "audience_name",
        "destination",
        "members",
        "predicted_reach",
        "files",
        "requests",
        "bytes",
        "duration_seconds",
        "status",
        "location",
    ]
    return report[columns].sort_values(["audience_name", "destination"], ignore_index=True)
