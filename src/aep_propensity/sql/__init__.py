"""The project's SQL templates (``*.sql`` in this folder, canonical DuckDB dialect) and their rendering.

Templates are Jinja; a value reaches one only as an SQL-safe fragment (a quoted identifier or typed
literal built by :mod:`aep_propensity.platform`'s ``identifier`` and ``literal``, or an integer),
never as pasted text. Shared pieces are Jinja includes (files starting with ``_``).
"""

from __future__ import annotations

from typing import Any

import jinja2

from aep_propensity.platform.core.sql import Sql


def _only_safe(value: Any) -> str:
    """Jinja's finaliser: only :class:`Sql` fragments and integers may be written into a template."""
    if isinstance(value, Sql) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise TypeError(f"template value {value!r} is not an SQL-safe fragment; build it with identifier() or literal()")


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("aep_propensity", "sql"),
    undefined=jinja2.StrictUndefined,
    finalize=_only_safe,
    autoescape=False,
    keep_trailing_newline=True,
)


def render_template(name: str, **values: Any) -> str:
    """Render the template ``<name>`` of this folder (canonical dialect) with SQL-safe ``values``."""
    return _TEMPLATES.get_template(name).render(**values)
