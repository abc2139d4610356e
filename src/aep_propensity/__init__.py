"""aep-propensity: Adobe Experience Platform's propensity workflow as a Kedro project."""

__version__ = "0.1.0"
