"""Validated parameters of the featurization pipeline (conf/base/parameters_featurization.yml).

Its time boundaries are the time design's (``aep_propensity.parameters.TimeDesign``), shared with evaluation.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from aep_propensity.parameters import FrozenParams

_EVENT_TYPE = re.compile(r"^[A-Za-z]+(\.[A-Za-z]+)+$")


class FeaturizationParams(FrozenParams):
    """The feature set, its extra count windows and the event types that get features."""

    feature_set: Literal["point_in_time", "cmle"] = "point_in_time"
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
        return self
