"""The simulated world's parameters (conf/base/parameters_simulation.yml): event types, rates, the propensity walk."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aep_propensity.parameters import FrozenParams, Window

EVENT_TYPES = (
    "advertising.impressions",
    "advertising.clicks",
    "web.webpagedetails.pageViews",
    "web.webinteraction.linkClicks",
    "commerce.productViews",
    "commerce.purchases",
    "decisioning.propositionDisplay",
    "decisioning.propositionInteract",
    "decisioning.propositionDismiss",
    "directMarketing.emailSent",
    "directMarketing.emailOpened",
    "directMarketing.emailClicked",
    "web.formFilledOut",
)
CONVERSION_EVENT = "web.formFilledOut"

Mode = Literal["default", "cmle"]


def _unknown_types(names: list[str] | set[str]) -> list[str]:
    """The names that are not one of the 13 event types."""
    return sorted(set(names) - set(EVENT_TYPES))


class Rates(FrozenParams):
    """Weekly rates: per person for base types, per parent occurrence for child types."""

    base: dict[str, float]
    children: dict[str, float]

    @model_validator(mode="after")
    def _check(self) -> Rates:
        for table, rates in (("base", self.base), ("children", self.children)):
            if unknown := _unknown_types(rates):
                raise ValueError(f"rates.{table}: unknown event types {unknown}")
            if negative := [name for name, rate in rates.items() if rate < 0]:
                raise ValueError(f"rates.{table}: negative rates for {negative}")
        return self


class Propensity(FrozenParams):
    """The propensity walk: start value, per-event deltas and the conversion event's delay."""

    initial: float = Field(ge=0, le=1)
    conversion_delay_seconds: float = Field(ge=0)
    deltas: dict[str, float]

    @model_validator(mode="after")
    def _check(self) -> Propensity:
        if unknown := _unknown_types(self.deltas):
            raise ValueError(f"propensity.deltas: unknown event types {unknown}")
        if missing := sorted(set(EVENT_TYPES) - set(self.deltas)):
            raise ValueError(f"propensity.deltas: no delta for {missing}")
        return self


class SimulationParams(FrozenParams):
    """Everything the simulator and its oracle need: the window, the event tree, rates and the propensity walk."""

    mode: Mode = "default"
    window: Window
    propensity: Propensity
    delay_hours: dict[str, float]
    children: dict[str, list[str]]
    rates: dict[Mode, Rates]
    engagement_shape: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> SimulationParams:
        named = set(self.children) | {kid for kids in self.children.values() for kid in kids} | set(self.delay_hours)
        if unknown := _unknown_types(named):
            raise ValueError(f"children/delay_hours: unknown event types {unknown}")
        if negative := [name for name, hours in self.delay_hours.items() if hours < 0]:
            raise ValueError(f"delay_hours: negative delays for {negative}")
        if self.mode not in self.rates:
            raise ValueError(f"rates: no rates for mode {self.mode!r}")
        rates = self.rates[self.mode]
        kids = {kid for kids in self.children.values() for kid in kids}
        if missing := sorted(kids - set(rates.children)):
            raise ValueError(f"rates.{self.mode}.children: no rate for child types {missing}")
        if missing := sorted(kids - set(self.delay_hours)):
            raise ValueError(f"delay_hours: no delay for child types {missing}")
        if CONVERSION_EVENT in named | set(rates.base):
            raise ValueError(f"{CONVERSION_EVENT} is made by the propensity walk; it cannot be generated")
        return self

    @property
    def active_rates(self) -> Rates:
        """The rates of the selected mode."""
        return self.rates[self.mode]
