"""Tests for the vectorised email/ECID generation against the reference ``mmh3`` implementation."""

import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aep_propensity.simulation.ids import _ecid_part, ecids, email_addresses, event_ids

EDGE_INDICES = [0, 1, 9, 10, 99, 100, 12345, 99999, 100000, 999999999]
PAD_DIGITS = "0123456789012345678"


def reference_ecid(i: int) -> str:
    """ECID of person ``i`` exactly as in Adobe's notebook, one ``mmh3`` call per person."""
    parts = []
    for half in mmh3.hash64(f"synthetic-user-{i}@adobe.com"):
        digits = str(abs(half))
        parts.append(PAD_DIGITS[: 19 - len(digits)] + digits)
    return "".join(parts)


@pytest.fixture(scope="module")
def person_index() -> np.ndarray:
    """Edge-case indices followed by 2000 seeded random indices across 0..10**9."""
    random = np.random.default_rng(20240611).integers(0, 10**9, size=2000, dtype=np.int64)
    return np.concatenate([np.array(EDGE_INDICES, dtype=np.int64), random])


def test_email_addresses_match_format(person_index: np.ndarray) -> None:
    result = email_addresses(person_index)
    assert isinstance(result, pa.StringArray)
    assert result.to_pylist() == [f"synthetic-user-{i}@adobe.com" for i in person_index]


def test_ecids_match_mmh3_reference(person_index: np.ndarray) -> None:
    result = ecids(person_index)
    assert isinstance(result, pa.StringArray)
    assert result.to_pylist() == [reference_ecid(int(i)) for i in person_index]


def test_ecids_are_38_characters(person_index: np.ndarray) -> None:
    assert {len(ecid) for ecid in ecids(person_index).to_pylist()} == {38}


def test_ecid_of_person_zero_by_hand() -> None:
    a, b = mmh3.hash64("synthetic-user-0@adobe.com")
    abs_a, abs_b = str(abs(a)), str(abs(b))
    expected = PAD_DIGITS[: 19 - len(abs_a)] + abs_a + PAD_DIGITS[: 19 - len(abs_b)] + abs_b
    assert ecids(np.array([0])).to_pylist() == [expected]


def test_padded_part_handles_extreme_signed_values() -> None:
    # Hash halves as unsigned bit patterns; the ECID uses abs() of their signed reading, incl. abs(-2**63).
    halves = np.array([2**63, 0, 2**64 - 1, 2**63 - 1, 12345], dtype=np.uint64)
    signed = [int(h) - 2**64 if h >= 2**63 else int(h) for h in halves]
    expected = [PAD_DIGITS[: 19 - len(str(abs(s)))] + str(abs(s)) for s in signed]
    prefix, digits = _ecid_part(halves)
    assert pc.binary_join_element_wise(prefix, digits, "").to_pylist() == expected
    assert expected[0] == "9223372036854775808"


def test_ecids_keep_input_order_and_duplicates() -> None:
    index = np.array([100000, 5, 999999999, 5, 42])
    assert ecids(index).to_pylist() == [reference_ecid(int(i)) for i in index]


def test_ecids_of_large_indices_beyond_nine_digits() -> None:
    index = np.array([10**9, 12345678901234, np.iinfo(np.int64).max])
    assert ecids(index).to_pylist() == [reference_ecid(int(i)) for i in index]


def test_ecids_empty_input() -> None:
    result = ecids(np.array([], dtype=np.int64))
    assert isinstance(result, pa.StringArray)
    assert len(result) == 0


def test_negative_index_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        ecids(np.array([3, -1]))


def test_ecids_run_for_one_million_indices() -> None:
    result = ecids(np.arange(1_000_000, dtype=np.int64))
    assert len(result) == 1_000_000
    assert result[999_999].as_py() == reference_ecid(999_999)


def test_event_ids_are_unique_seeded_hex():
    person = np.repeat(np.arange(50_000), 7)
    rank = np.tile(np.arange(7), 50_000)
    ids = event_ids(3, person, rank).to_pylist()
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids[:1000])
    assert event_ids(3, person[:10], rank[:10]).to_pylist() == ids[:10]
    assert not set(event_ids(4, person[:1000], rank[:1000]).to_pylist()) & set(ids)
