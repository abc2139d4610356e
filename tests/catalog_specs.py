"""The dataset schemas the project's catalog declares (conf/base), for tests that ingest like the pipelines."""

from __future__ import annotations

from functools import cache

import yaml

from aep_propensity.platform import DatasetSpec
from tests.conftest import PROJECT


@cache
def catalog_spec(entry: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a catalog entry with a ``schema`` (e.g. ``profiles@chunks``) in conf/base."""
    for path in sorted((PROJECT / "conf" / "base").glob("catalog*.yml")):
        entries = yaml.safe_load(path.read_text()) or {}
        if entry in entries:
            config = entries[entry]
            return DatasetSpec.from_config(config["table"], config["schema"])
    raise KeyError(f"no catalog entry {entry!r} in conf/base")
