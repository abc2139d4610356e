"""Validated parameters of the featurization pipeline (conf/base/parameters_featurization.yml)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_EVENT_TYPE = re.compile(r"^[A-Za-z]+(\.[A-Za-z]+)+$")


class Window(BaseModel):
    """The data window: ``weeks`` weeks from ``start``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: datetime
    weeks: int = Field(gt=0)

    @property
    def end(self) -> datetime:
        """The reference date: the end of the window."""
        return self.start + timedelta(weeks=self.weeks)


class FeaturizationParams(BaseModel):
    """Feature windows and the feature set; every time boundary is checked against the data window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature_set: Literal["point_in_time", "cmle"] = "point_in_time"
    window: Window
    cutoff: datetime | None = None
    scoring_time: datetime | None = None
    lookback_days: int = Field(56, gt=0)
    horizon_days: int = Field(14, gt=0)
    recent_days: list[int] = [7, 28]
    seed: int = Field(0, ge=0)
    event_types: list[str]
    conversion_event: str = "web.formFilledOut"

    @model_validator(mode="after")
    def _check(self) -> FeaturizationParams:
        bad = [name for name in [*self.event_types, self.conversion_event] if not _EVENT_TYPE.match(name)]
        if bad:
            raise ValueError(f"event_types: not event type names: {bad}")
        if self.conversion_event in self.event_types:
            raise ValueError("event_types must not include the conversion event")
        if not all(0 < days < self.lookback_days for days in self.recent_days):
            raise ValueError(f"recent_days must each be between 1 and lookback_days - 1, got {self.recent_days}")
        start, end = self.window.start, self.window.end
        if self.training_cutoff - self.lookback < start:
            raise ValueError(
                f"cutoff {self.training_cutoff} minus lookback_days={self.lookback_days} starts before the data "
                f"window ({start})"
            )
        if self.training_cutoff + self.horizon > end:
            raise ValueError(
                f"cutoff {self.training_cutoff} plus horizon_days={self.horizon_days} ends after the data "
                f"window ({end})"
            )
        if not start + self.lookback <= self.scoring_at <= end:
            raise ValueError(
                f"scoring_time {self.scoring_at} must lie in [window start + lookback, window end] "
                f"= [{start + self.lookback}, {end}]"
            )
        return self

    @property
    def lookback(self) -> timedelta:
        """The lookback as a duration."""
        return timedelta(days=self.lookback_days)

    @property
    def horizon(self) -> timedelta:
        """The horizon as a duration."""
        return timedelta(days=self.horizon_days)

    @property
    def training_cutoff(self) -> datetime:
        """The training cutoff: as configured, or the reference date minus the horizon."""
        return self.cutoff or self.window.end - self.horizon

    @property
    def scoring_at(self) -> datetime:
        """When scoring features are taken: as configured, or the reference date."""
        return self.scoring_time or self.window.end
