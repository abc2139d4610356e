"""What every parameter model shares: the frozen base they build on.

Parameters reach the nodes as these models, validated before any node runs: Kedro validates each
``params:<key>`` input into the model its node's type hint names, so one key has one model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenParams(BaseModel):
    """The base of every parameter model: unknown keys are errors, and values never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
