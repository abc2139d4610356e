"""What a whole run left, as figures two runs of the same seed and parameters must share, whatever the backend."""

from __future__ import annotations

import fsspec
import pandas as pd
from kedro.framework.session import KedroSession


def counts(session: KedroSession) -> dict:
    """What the run left on its platform: profiles, events, scored people, audience members, activated files/rows."""
    catalog = session.load_context().catalog
    scores = catalog.load("platform_queries").query(
        "SELECT count(propensity) AS scored, count(*) FILTER (WHERE converted) AS converted FROM enriched_profiles"
    )
    report = catalog.load("activation_report")
    files = report[report["destination"] == "cloud_storage"]
    delivered = {}
    for row in files.itertuples():
        fs, folder = fsspec.core.url_to_fs(row.location)
        parts = sorted(fs.find(folder))
        rows = sum(len(pd.read_csv(fs.open(part))) for part in parts)
        delivered[row.audience_name] = (len(parts), rows)
    return {
        "profiles": catalog.load("profiles@handle").row_count,
        "events": catalog.load("experience_events@handle").row_count,
        "scored": int(scores["scored"].iloc[0]),
        "converted": int(scores["converted"].iloc[0]),
        "members": dict(zip(report["audience_name"], report["members"], strict=True)),
        "delivered": delivered,
    }
