"""What every parameter model shares: the frozen base they build on, and the time design.

Parameters reach the nodes as these models, validated before any node runs: Kedro validates each
``params:<key>`` input into the model its node's type hint names, so one key has one model. The time
design is its own key because featurization (features and labels) and evaluation (the oracle's
horizon) must take the same instants.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class FrozenParams(BaseModel):
    """The base of every parameter model: unknown keys are errors, and values never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(FrozenParams):
    """The data window: ``weeks`` weeks from ``start``."""

    start: datetime
    weeks: int = Field(gt=0)

    @field_validator("start")
    @classmethod
    def _naive_utc(cls, start: datetime) -> datetime:
        """The platform stores UTC without a zone: convert an aware start to naive UTC."""
        return start.astimezone(UTC).replace(tzinfo=None) if start.tzinfo else start

    @property
    def end(self) -> datetime:
        """The reference date: the end of the window."""
        return self.start + timedelta(weeks=self.weeks)


class TimeDesign(FrozenParams):
    """When features, labels and scores are taken; every boundary is checked against the data window.

    Training features look back ``lookback_days`` from the training cutoff and the label looks
    ``horizon_days`` ahead of it; scoring features look back from the scoring time.
    """

    window: Window
    cutoff: datetime | None = None
    scoring_time: datetime | None = None
    lookback_days: int = Field(56, gt=0)
    horizon_days: int = Field(14, gt=0)

    @model_validator(mode="after")
    def _check(self) -> TimeDesign:
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
