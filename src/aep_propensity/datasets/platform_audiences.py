"""Audiences and destinations as Kedro datasets: saving asks the platform to act, loading reads its ledger.

``PlatformAudienceDataset`` saves audience definitions (upsert by name, then evaluate each as a
job, members materialised in ``audience_membership``) and loads each audience's latest successful
job. ``PlatformDestinationDataset`` saves an activation request (deliver those jobs to its
destination, never twice unless forced) and loads the deliveries the ledger recorded for it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from aep_propensity.datasets.platform_mixin import PlatformMixin
from aep_propensity.platform import (
    ActivationRequest,
    AudienceDefinition,
    AudienceJob,
    Delivery,
    ProfileSource,
    make_destination,
)

logger = logging.getLogger(__name__)


class PlatformAudienceDataset(PlatformMixin, AbstractDataset[list[AudienceDefinition], pd.DataFrame]):
    """Audiences on the platform, evaluated against a profile source.

    Example catalog entry::

        audience_membership@definitions:
          type: aep_propensity.datasets.PlatformAudienceDataset
          platform: ${globals:platform}
          credentials: platform
          source: {table: enriched_profiles, fields: ${globals:profile_fields}}
    """

    def __init__(
        self,
        *,
        platform: dict[str, Any],
        source: dict[str, Any],
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._configure_platform("audiences", platform, credentials)
        self._source = ProfileSource.from_config(source)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source.table, "fields": sorted(self._source.fields)}

    def save(self, data: list[AudienceDefinition]) -> None:
        """Upsert every audience, then evaluate each one."""
        platform = self._platform
        for definition in data:
            record = platform.upsert_audience(definition, self._source)
            logger.info("Audience %s %s (version %d): %s", record.name, record.change, record.version, record.rule)
            platform.evaluate_audience(record.id)

    def load(self) -> pd.DataFrame:
        """Each audience's latest successful evaluation job."""
        jobs = self._platform.audience_jobs()
        columns = list(AudienceJob.__dataclass_fields__)
        return pd.DataFrame([asdict(job) for job in jobs], columns=columns).rename(columns={"id": "job_id"})

    def _exists(self) -> bool:
        return bool(self._platform.audience_jobs())


class PlatformDestinationDataset(PlatformMixin, AbstractDataset[ActivationRequest, pd.DataFrame]):
    """An activation destination.

    Example catalog entry::

        audience_files@request:
          type: aep_propensity.datasets.PlatformDestinationDataset
          platform: ${globals:platform}
          credentials: platform
          destination: {type: files, name: cloud_storage, path: data/08_reporting/destinations, format: csv}
          attributes: [email, loyalty_tier, propensity]

    ``enabled: false`` keeps a configured destination idle (its saves deliver nothing).
    """

    def __init__(
        self,
        *,
        platform: dict[str, Any],
        destination: dict[str, Any],
        attributes: list[str] | None = None,
        enabled: bool = True,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._configure_platform(f"destination {destination.get('name')}", platform, credentials)
        self._destination = make_destination(destination)
        self._attributes = list(attributes or [])
        self._enabled = enabled
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"destination": self._destination.name, "enabled": self._enabled, "attributes": self._attributes}

    def save(self, data: ActivationRequest) -> None:
        """Deliver the requested audience jobs (skipping those already delivered here unless forced)."""
        if not isinstance(data, ActivationRequest):
            raise DatasetError(
                f"destination {self._destination.name}: expected an ActivationRequest, got {type(data).__name__}"
            )
        if not self._enabled:
            logger.info("Destination %s is disabled: nothing delivered", self._destination.name)
            return
        platform = self._platform
        platform.activate(list(data.job_ids), self._destination, self._attributes, force=data.force)

    def load(self) -> pd.DataFrame:
        """The ledger's deliveries to this destination, newest first."""
        deliveries = self._platform.deliveries(self._destination.name)
        return pd.DataFrame([asdict(d) for d in deliveries], columns=list(Delivery.__dataclass_fields__))
