"""Project hooks: the run's identity for the nodes that stamp their outputs with it, and node timings.

Nodes stay pure: instead of reading the clock or making ids, a node that records a run (scoring)
takes ``run_context`` as an input, which a hook puts in the catalog before the run starts.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline

logger = logging.getLogger(__name__)

RUN_CONTEXT = "run_context"


@dataclass(frozen=True)
class RunContext:
    """Who this run is: Kedro's run id (unique per session) and when it started (naive UTC)."""

    run_id: str
    started_at: datetime


class RunContextHooks:
    """Provides ``run_context`` to the pipelines that ask for it."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        """Add this run's context to the catalog when the pipeline takes it as an input."""
        if RUN_CONTEXT in pipeline.inputs():
            run_id = run_params.get("run_id") or uuid.uuid4().hex
            catalog[RUN_CONTEXT] = RunContext(str(run_id), datetime.now(UTC).replace(tzinfo=None))


class NodeTimingHooks:
    """Logs how long each node took (loading, running and saving its datasets)."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Note when the node starts."""
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Node) -> None:
        """Log the node's time once its last output is saved."""
        if node.name in self._started and dataset_name == node.outputs[-1]:
            logger.info("Node %s took %.2f s", node.name, time.perf_counter() - self._started.pop(node.name))
