"""Project settings: hooks and configuration loading for the Kedro environments under conf/."""

from kedro.config import OmegaConfigLoader

from aep_propensity import log_redaction
from aep_propensity.hooks import MlflowTrackingHooks, NodeTimingHooks, RunContextHooks

# No secret in any log at any level: at DEBUG, Kedro's hook tracing logs the resolved credentials.
log_redaction.install()

HOOKS = (RunContextHooks(), NodeTimingHooks(), MlflowTrackingHooks())

# kedro-mlflow (the optional `mlflow` extra) would track every run once installed: its hook is off here,
# and MlflowTrackingHooks runs it only in environments with an mlflow.yml (`kedro run --env mlflow`).
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}
