"""SQL-safe fragments: identifiers and literals are built by sqlglot from checked values, never pasted."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from aep_propensity.platform import identifier, literal
from aep_propensity.sql import render_template


def test_identifiers_are_quoted_and_keep_their_case() -> None:
    assert identifier("eventType") == '"eventType"'
    assert identifier("scoring_features") == '"scoring_features"'


@pytest.mark.parametrize("name", ['x"; DROP TABLE people; --', "two words", "1st", "", "a" * 64])
def test_unsafe_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid identifier name"):
        identifier(name)


def test_literals_are_typed_and_escaped() -> None:
    assert literal("it's") == "'it''s'"
    assert literal(3) == "3" and literal(True) == "TRUE"
    assert literal(date(2026, 8, 3)) == "CAST('2026-08-03' AS DATE)"
    assert literal(datetime(2026, 8, 3, 12)) == "CAST('2026-08-03 12:00:00' AS TIMESTAMP)"


def test_templates_accept_only_safe_fragments() -> None:
    with pytest.raises(TypeError, match="not an SQL-safe fragment"):
        render_template("enriched_profiles.sql", profiles="profiles; DROP TABLE x", scores=identifier("s"))
