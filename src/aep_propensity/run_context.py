"""The identity of a run, for the nodes that stamp their outputs with it.

Nodes stay pure: instead of reading the clock or making ids, a node that records a run (scoring)
takes a ``RunContext`` as an input, which a project hook provides before the run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RunContext:
    """Who this run is: Kedro's run id (unique per session) and when it started (naive UTC)."""

    run_id: str
    started_at: datetime
