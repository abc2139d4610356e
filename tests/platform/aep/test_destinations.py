"""Activation's pure helpers: an activated file's columns found by header."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aep_propensity.platform.aep import AEPError
from aep_propensity.platform.aep.destinations import _by_header


def test_activated_columns_are_found_by_header_not_position() -> None:
    table = pa.table({"email": ["a@x"], "_acme.userid": ["p1"], "_acme.propensity": [0.9]})
    picked = _by_header(table, ["ecid", "propensity"], ["_acme.userid", "_acme.propensity"], "f.csv")
    assert picked.to_pylist() == [{"ecid": "p1", "propensity": 0.9}]
    with pytest.raises(AEPError, match=r"activation file f.csv has no column loyalty.tier \(loyalty_tier\)"):
        _by_header(table, ["ecid", "loyalty_tier"], ["_acme.userid", "loyalty.tier"], "f.csv")
