"""One platform per configuration within a process, shared by every dataset that names it.

This is the pattern of kedro-datasets' ``ConnectionMixin``: datasets with equal platform blocks
and credentials share one platform object (and so, on AEP, one OAuth token, one tenant check and
one set of Query Service connection parameters), built on first use, never in ``__init__``
(kedro-viz instantiates the whole catalog). The configuration itself is validated in ``__init__``,
so a bad key is reported when the catalog is made, naming the dataset and the key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

from kedro.io import DatasetError

from aep_propensity.platform import Platform, PlatformConfig, parse_platform_config


class PlatformMixin:
    """Gives a dataset ``self._platform``, shared with every dataset of the same configuration."""

    _platforms: ClassVar[dict[str, Platform]] = {}
    _platform_config: PlatformConfig
    _credentials: dict[str, Any]
    _platform_key: str

    def _configure_platform(self, name: str, platform: dict[str, Any], credentials: dict[str, Any] | None) -> None:
        """Validate the catalog's ``platform`` block for the dataset ``name`` and keep its credentials."""
        try:
            self._platform_config = parse_platform_config(platform)
        except ValueError as exc:
            raise DatasetError(f"{name}: {exc}") from None
        self._credentials = dict(credentials or {})
        # which shared platform this dataset uses: its configuration and a digest of its credentials
        secret = hashlib.sha256(json.dumps(self._credentials, sort_keys=True, default=str).encode()).hexdigest()
        self._platform_key = f"{self._platform_config.model_dump_json()}:{secret}"

    @property
    def _platform(self) -> Platform:
        """The shared platform (built on first use; it opens connections per operation)."""
        key = self._platform_key
        if key not in self._platforms:
            self._platforms[key] = self._platform_config.build(self._credentials)
        return self._platforms[key]
