"""Validated parameters of the activation pipeline (conf/base/parameters_activation.yml)."""

from __future__ import annotations

from pydantic import Field

from aep_propensity.parameters import FrozenParams


class PropensityRange(FrozenParams):
    """A fixed audience on the score: ``min <= propensity <= max`` (either bound optional)."""

    name: str
    min: float | None = Field(None, ge=0, le=1)
    max: float | None = Field(None, ge=0, le=1)
    description: str = ""


class RuleAudience(FrozenParams):
    """Any PQL audience."""

    name: str
    rule: str
    description: str = ""


class ActivationParams(FrozenParams):
    """Audience tiers, fixed ranges and rules, and activation options."""

    tenant: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    tiers: dict[str, float] | None = None
    low_tier: str | None = "low"
    ranges: list[PropensityRange] = []
    rules: list[RuleAudience] = []
    histogram_bins: int = Field(200, gt=1)
    force: bool = False
