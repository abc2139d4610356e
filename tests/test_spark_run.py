"""End to end on the spark backend: every pipeline with ``--env spark`` (Spark local mode) gets the same
figures as the embedded run on the same seed and parameters: profiles, events, both feature tables row
for row, both models' test metrics, scored people, audience members and delivered rows."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
from kedro.framework.session import KedroSession

from tests.conftest import PROJECT, require_module
from tests.run_figures import counts


def figures(session: KedroSession) -> dict:
    """The run's counts, its models' test metrics and its feature tables (sorted by ecid)."""
    catalog = session.load_context().catalog
    metrics = catalog.load("model_metrics")
    features = {
        name: catalog.load(f"{name}@pandas").sort_values("ecid", ignore_index=True)
        for name in ("training_features", "scoring_features")
    }
    return {**counts(session), "test": metrics["test"], "features": metrics["features"], "tables": features}


def assert_same_tables(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    """The same columns, rows and values (floats within 1e-9 relative; integers of any width alike)."""
    for name, frame in left.items():
        other = right[name]
        assert list(other.columns) == list(frame.columns), name
        assert len(other) == len(frame), name
        for column in frame.columns:
            mine, theirs = frame[column], other[column]
            if pd.api.types.is_float_dtype(mine) or pd.api.types.is_float_dtype(theirs):
                pd.testing.assert_series_equal(
                    mine.astype(float), theirs.astype(float), rtol=1e-9, obj=f"{name}.{column}"
                )
            else:
                assert mine.astype(str).tolist() == theirs.astype(str).tolist(), f"{name}.{column}"


def assert_close(left: object, right: object, where: str = "test") -> None:
    """The same structure, numbers equal within 1e-9 relative."""
    if isinstance(left, dict):
        assert isinstance(right, dict) and left.keys() == right.keys(), where
        for key in left:
            assert_close(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, list):
        assert isinstance(right, list) and len(left) == len(right), where
        for index, (mine, theirs) in enumerate(zip(left, right, strict=True)):
            assert_close(mine, theirs, f"{where}[{index}]")
    elif isinstance(left, float):
        assert math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12), (where, left, right)
    else:
        assert left == right, (where, left, right)


def test_spark_run_matches_the_embedded_run(tmp_path: Path, kedro_session) -> None:
    require_module("pyspark", "pip install -e '.[spark]'")
    with kedro_session() as session:
        session.run()
    with kedro_session() as session:
        embedded = figures(session)

    conf = tmp_path / "conf"
    for parameters in (conf / "test").glob("parameters_*.yml"):  # the same small parameters
        shutil.copy(parameters, conf / "spark" / parameters.name)
    globals_file = conf / "spark" / "globals.yml"
    text = globals_file.read_text().replace("data_root: data/spark_run", f"data_root: {tmp_path / 'spark_run'}")
    globals_file.write_text(text)
    with KedroSession.create(project_path=PROJECT, env="spark", conf_source=str(conf)) as session:
        session.run()
    with KedroSession.create(project_path=PROJECT, env="spark", conf_source=str(conf)) as session:
        on_spark = figures(session)

    print(  # noqa: T201 - the figures of both runs, shown with -s
        {k: v for k, v in on_spark.items() if k not in ("tables", "test", "features")},
        {m: round(on_spark["test"][m]["roc_auc"], 4) for m in ("lightgbm", "baseline")},
    )
    assert embedded["profiles"] == 3_000 and embedded["members"]
    assert_same_tables(embedded.pop("tables"), on_spark.pop("tables"))
    assert_close(embedded["test"], on_spark["test"])  # both models' test metrics
    assert {k: v for k, v in on_spark.items() if k != "test"} == {k: v for k, v in embedded.items() if k != "test"}
