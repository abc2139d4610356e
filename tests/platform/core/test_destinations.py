"""Names that become paths are checked where they enter: nothing is written outside a destination's root."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aep_propensity.platform import AudienceDefinition
from aep_propensity.platform.core.destinations import FileDestination

HOSTILE = ["../../../../tmp/x", "a/b", "..", "", " high", "high\x00", "high\n", "x" * 101, "/etc/passwd"]


@pytest.mark.parametrize("name", HOSTILE)
def test_an_audience_name_that_is_not_one_folder_name_is_refused(name):
    with pytest.raises(ValueError, match="invalid audience name"):
        AudienceDefinition(name, "_acme.propensity > 0.5")


@pytest.mark.parametrize("name", HOSTILE)
def test_a_file_destination_writes_nothing_outside_its_root(name, tmp_path):
    destination = FileDestination("cloud_storage", str(tmp_path / "root"))
    members = [pa.record_batch({"ecid": ["e1"]})]
    with pytest.raises(ValueError, match="invalid audience name"):
        destination.deliver(name, "a" * 32, "b" * 32, members)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    with pytest.raises(ValueError, match="invalid destination name"):
        FileDestination("../up", str(tmp_path / "root"))


def test_ordinary_names_deliver_under_the_root(tmp_path):
    destination = FileDestination("cloud_storage", str(tmp_path / "root"))
    result = destination.deliver("moderate_to_high", "a" * 32, "b" * 32, [pa.record_batch({"ecid": ["e1"]})])
    assert result.members == 1 and (tmp_path / "root" / "moderate_to_high").is_dir()
