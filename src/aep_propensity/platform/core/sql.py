"""The SQL helpers of every backend: quoted identifiers, typed literals, and transpiling between dialects.

The project writes SQL once, in the canonical dialect, and sqlglot renders it for each engine.
Values never reach SQL as pasted text: SQL receives quoted identifiers and typed literals built
here by sqlglot, from parameters that were validated before.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

import sqlglot
from sqlglot import exp

from .port import CANONICAL_DIALECT, check_name


class Sql(str):
    """A fragment of SQL made safe here (a quoted identifier, a typed literal or a list of them)."""


@lru_cache(maxsize=256)
def transpile(sql: str, dialect: str) -> str:
    """Render canonical-dialect ``sql`` in ``dialect`` (unchanged for the canonical dialect)."""
    if dialect == CANONICAL_DIALECT:
        return sql
    statements = sqlglot.transpile(sql, read=CANONICAL_DIALECT, write=dialect)
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def identifier(name: str) -> Sql:
    """A quoted identifier for a checked table or column name (column names may be mixed-case: ``eventType``)."""
    check_name(name.lower() if isinstance(name, str) else name, "identifier")
    return Sql(exp.to_identifier(name, quoted=True).sql(CANONICAL_DIALECT))


def literal_list(values: list[str | int | float]) -> Sql:
    """Comma-separated literals, for ``IN (...)``."""
    return Sql(", ".join(literal(value) for value in values))


def literal(value: str | int | float | bool | datetime | date) -> Sql:
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
    return Sql(node.sql(CANONICAL_DIALECT))
