"""Project settings: hooks and configuration loading for the Kedro environments under conf/."""

from kedro.config import OmegaConfigLoader

from aep_propensity.hooks import NodeTimingHooks, RunContextHooks

HOOKS = (RunContextHooks(), NodeTimingHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}
