"""Validated parameters of the activation pipeline (conf/base/parameters_activation.yml).

Kedro validates ``params:activation`` into :class:`ActivationParams` when it builds the run's catalog,
before any node runs, so everything an audience needs is checked here: names that become folders and
files, PQL rules parsed, tier shares bounded, ranges ordered, and no name used twice.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from aep_propensity.parameters import FrozenParams
from aep_propensity.platform.core.port import check_path_name
from aep_propensity.platform.core.pql import PqlError, parse_pql


def _audience_name(name: str) -> str:
    """``name`` if it can name an audience (it becomes a folder and file name), else raise saying why."""
    return check_path_name(name, "audience")


AudienceName = Annotated[str, AfterValidator(_audience_name)]
#: A tier's share of the scored profiles: an empty tier (0) or more than everyone (> 1) is meaningless.
TierShare = Annotated[float, Field(gt=0, le=1)]


class PropensityRange(FrozenParams):
    """A fixed audience on the score: ``min <= propensity <= max`` (either bound optional)."""

    name: AudienceName
    min: float | None = Field(None, ge=0, le=1)
    max: float | None = Field(None, ge=0, le=1)
    description: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> PropensityRange:
        """The range, if its bounds are in order."""
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"audience {self.name!r}: min {self.min:g} is above max {self.max:g}, so no one is in it")
        return self


class RuleAudience(FrozenParams):
    """Any PQL audience; its rule is parsed here (its fields are checked when the platform compiles it)."""

    name: AudienceName
    rule: str
    description: str = ""

    @field_validator("rule")
    @classmethod
    def _parses(cls, rule: str, info: ValidationInfo) -> str:
        """The rule, if it is valid PQL; else raise naming the audience and where the rule goes wrong."""
        try:
            parse_pql(rule)
        except PqlError as error:
            raise ValueError(f"audience {info.data.get('name')!r}: invalid PQL rule: {error}") from None
        return rule


def _sum_at_most_one(tiers: dict[str, float] | None) -> dict[str, float] | None:
    """The tiers, if their shares sum to at most 1 (with rounding slack), else raise saying why."""
    total = sum((tiers or {}).values())
    if total > 1 + 1e-9:
        shares = ", ".join(f"{name}={share:g}" for name, share in (tiers or {}).items())
        raise ValueError(
            f"tier shares sum to {total:g} ({shares}): tiers take the highest scores in turn, so shares "
            "beyond 1 leave the later tiers (and the low tier) empty; keep the sum at most 1"
        )
    return tiers


class ActivationParams(FrozenParams):
    """Audience tiers, fixed ranges and rules, and activation options."""

    tenant: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    tiers: Annotated[dict[AudienceName, TierShare] | None, AfterValidator(_sum_at_most_one)] = None
    low_tier: AudienceName | None = "low"
    ranges: list[PropensityRange] = []
    rules: list[RuleAudience] = []
    histogram_bins: int = Field(200, gt=1)
    force: bool = False

    @model_validator(mode="after")
    def _unique_names(self) -> ActivationParams:
        """The parameters, if no two audiences share a name (a name is upserted, and delivered, once)."""
        seen: dict[str, str] = {}
        for name, where in self.audience_names():
            if name in seen:
                raise ValueError(f"audience name {name!r} is used twice, by {seen[name]} and {where}")
            seen[name] = where
        return self

    def audience_names(self) -> list[tuple[str, str]]:
        """Every audience's name, with the parameter it comes from (``tiers.high``, ``rules[0].name``)."""
        names = [(name, f"tiers.{name}") for name in self.tiers or {}]
        if self.tiers and self.low_tier:
            names.append((self.low_tier, "low_tier"))
        names += [(r.name, f"ranges[{i}].name") for i, r in enumerate(self.ranges)]
        return names + [(r.name, f"rules[{i}].name") for i, r in enumerate(self.rules)]
