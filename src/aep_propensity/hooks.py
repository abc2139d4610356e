"""Project hooks: the run's identity for the nodes that stamp their outputs with it, node timings, and
optional experiment tracking with kedro-mlflow.

Nodes stay pure: instead of reading the clock or making ids, a node that records a run (scoring)
takes ``run_context`` as an input, which a hook puts in the catalog before the run starts.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from kedro.config import AbstractConfigLoader, MissingConfigException
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol, DataCatalog
from kedro.pipeline import Node, Pipeline
from pydantic import BaseModel

from aep_propensity.run_context import RunContext

logger = logging.getLogger(__name__)

RUN_CONTEXT = "run_context"


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


# Experiment tracking (kedro-mlflow): which saved dataset holds the model metrics, and where the plugin
# reads its configuration (the same patterns as the plugin itself).
TRACKED_METRICS = "model_metrics"
MLFLOW_CONFIG_PATTERNS = ["mlflow*", "mlflow*/**", "**/mlflow*"]


def mlflow_configured(config_loader: AbstractConfigLoader) -> bool:
    """Whether the run's environment configures kedro-mlflow (an ``mlflow.yml``, as in ``conf/mlflow``)."""
    config_loader.config_patterns.setdefault("mlflow", MLFLOW_CONFIG_PATTERNS)
    try:
        return bool(config_loader["mlflow"])
    except MissingConfigException:
        return False


def numeric_leaves(tree: Any, prefix: str) -> dict[str, float]:
    """The finite numbers of a nested dict under dotted names (``test.lightgbm.roc_auc``); lists are skipped."""
    if isinstance(tree, dict):
        leaves: dict[str, float] = {}
        for key, value in tree.items():
            leaves.update(numeric_leaves(value, f"{prefix}.{key}"))
        return leaves
    if isinstance(tree, int | float) and not isinstance(tree, bool) and math.isfinite(tree):
        return {prefix: float(tree)}
    return {}


def plain_parameters(inputs: dict[str, Any]) -> dict[str, Any]:
    """A node's inputs with its validated parameters (pydantic models) as dicts, which kedro-mlflow flattens."""
    return {
        name: value.model_dump(mode="json") if name.startswith("params:") and isinstance(value, BaseModel) else value
        for name, value in inputs.items()
    }


def tracked_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The MLflow metrics of a model report: both models' test metrics, e.g. ``test.lightgbm.roc_auc``."""
    return numeric_leaves(report.get("test", {}), "test")


class MlflowTrackingHooks:
    """Experiment tracking with kedro-mlflow, on only in environments that configure it (``--env mlflow``).

    Installed, kedro-mlflow would track every run; settings.py disables its own hook and this one forwards
    to it when the run's environment has an ``mlflow.yml``. The plugin then logs every node's parameters
    and the catalog's MLflow datasets (the model); this hook adds the model metrics as MLflow metrics.
    """

    def __init__(self) -> None:
        self._hook: Any | None = None

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Turn tracking on for this session when its environment configures it."""
        self._hook = None
        if not mlflow_configured(context.config_loader):
            return
        try:
            module = importlib.import_module("kedro_mlflow.framework.hooks.mlflow_hook")
        except ImportError as error:
            raise ImportError(
                f"environment '{context.env}' turns MLflow tracking on, but kedro-mlflow is not installed: "
                "pip install -e '.[mlflow]'"
            ) from error
        self._hook = module.MlflowHook()
        self._hook.after_context_created(context)

    @hook_impl
    def after_catalog_created(
        self,
        catalog: CatalogProtocol,
        conf_catalog: dict[str, Any],
        conf_creds: dict[str, Any],
        parameters: dict[str, Any],
        save_version: str,
        load_versions: dict[str, str],
    ) -> None:
        """Let the plugin name its metric datasets."""
        if self._hook is not None:
            self._hook.after_catalog_created(catalog, conf_catalog, conf_creds, parameters, save_version, load_versions)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        """Start the MLflow run."""
        if self._hook is not None:
            self._hook.before_pipeline_run(run_params, pipeline, catalog)

    @hook_impl
    def before_node_run(self, node: Node, catalog: DataCatalog, inputs: dict[str, Any], is_async: bool) -> None:
        """Log the node's parameters, one MLflow parameter per setting."""
        if self._hook is not None:
            self._hook.before_node_run(node, catalog, plain_parameters(inputs), is_async)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        """Log the model metrics as MLflow metrics once they are saved."""
        run_id = getattr(self._hook, "run_id", None)
        if dataset_name == TRACKED_METRICS and run_id is not None:
            importlib.import_module("mlflow").log_metrics(tracked_metrics(data), run_id=run_id)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        """End the MLflow run."""
        if self._hook is not None:
            self._hook.after_pipeline_run(run_params, pipeline, catalog)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
        """Mark the MLflow run failed."""
        if self._hook is not None:
            self._hook.on_pipeline_error(error, run_params, pipeline, catalog)
