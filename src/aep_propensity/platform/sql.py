"""SQL rendering: the project writes SQL once, in the canonical dialect, and sqlglot renders it.

Values never reach SQL as pasted text: templates receive quoted identifiers and typed literals
built here by sqlglot, from parameters that were validated before.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

import sqlglot
from sqlglot import exp

from .port import CANONICAL_DIALECT, check_name


@lru_cache(maxsize=256)
def transpile(sql: str, dialect: str) -> str:
    """Render canonical-dialect ``sql`` in ``dialect`` (unchanged for the canonical dialect)."""
    if dialect == CANONICAL_DIALECT:
        return sql
    statements = sqlglot.transpile(sql, read=CANONICAL_DIALECT, write=dialect)
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def identifier(name: str) -> str:
    """A quoted identifier for a checked table or column name."""
    return exp.to_identifier(check_name(name, "identifier"), quoted=True).sql(CANONICAL_DIALECT)


def literal(value: str | int | float | bool | datetime | date) -> str:
    """A typed SQL literal (strings escaped by sqlglot; datetimes as TIMESTAMP, dates as DATE)."""
    if isinstance(value, bool):
        node: exp.Expression = exp.Boolean(this=value)
    elif isinstance(value, datetime):
        node = exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMP")
    elif isinstance(value, date):
        node = exp.cast(exp.Literal.string(value.isoformat()), "DATE")
    elif isinstance(value, int | float):
        node = exp.Literal.number(value)
    elif isinstance(value, str):
        node = exp.Literal.string(value)
    else:
        raise TypeError(f"no SQL literal for {type(value).__name__}")
    return node.sql(CANONICAL_DIALECT)
