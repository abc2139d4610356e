"""The golden test's hand-built dataset: a few dozen people, each chosen for an edge case of the SQL.

The time design is the base one over a 10-week window from 2026-01-05: the training cutoff is
2026-03-02 00:00 (the window end minus the 14-day horizon), the lookback starts at the window start
(56 days before the cutoff), the recent windows start 7 and 28 days before the cutoff, the label's
horizon ends 2026-03-16 00:00, which is also the window end and the scoring time.

Every event type of the features and the conversion appears; the comments say what each person is for.
Tables are built with the platform's own schemas (the catalog's dataset specs), so each engine gets
the column types the pipelines store.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import yaml

from aep_propensity.parameters import TimeDesign
from aep_propensity.pipelines.featurization.params import FeaturizationParams
from benchmarks.common import catalog_spec

PROJECT = Path(__file__).resolve().parents[2]
_CONF = PROJECT / "conf" / "base"

#: The featurization parameters of the default run (all twelve event types, the conversion event).
FEATURES = FeaturizationParams(**yaml.safe_load((_CONF / "parameters_featurization.yml").read_text())["featurization"])
#: The same with the original's running-window (cmle) feature set.
CMLE_FEATURES = FeaturizationParams(**{**FEATURES.model_dump(), "feature_set": "cmle"})
_TIME = yaml.safe_load((_CONF / "parameters_time_design.yml").read_text())["time_design"]
#: The base time design over a 10-week window from 2026-01-05.
TIME = TimeDesign(**{**_TIME, "window": {"start": "2026-01-05T00:00:00", "weeks": 10}})
#: The PQL paths of the enriched profiles (globals.yml's profile_fields) and the tenant.
_GLOBALS = yaml.safe_load((_CONF / "globals.yml").read_text())
PROFILE_FIELDS: dict = _GLOBALS["profile_fields"]
TENANT: str = _GLOBALS["tenant"]

CUTOFF = datetime(2026, 3, 2)
SENT = "directMarketing.emailSent"
OPENED = "directMarketing.emailOpened"
CLICKED = "directMarketing.emailClicked"
IMPRESSION = "advertising.impressions"
AD_CLICK = "advertising.clicks"
PAGE_VIEW = "web.webpagedetails.pageViews"
LINK_CLICK = "web.webinteraction.linkClicks"
PRODUCT_VIEW = "commerce.productViews"
PURCHASE = "commerce.purchases"
DISPLAY = "decisioning.propositionDisplay"
INTERACT = "decisioning.propositionInteract"
DISMISS = "decisioning.propositionDismiss"
CONVERSION = "web.formFilledOut"


def _ts(text: str) -> datetime:
    """A naive UTC datetime from ISO text (microseconds allowed)."""
    return datetime.fromisoformat(text)


# (ecid, eventType, timestamp); None where the value is missing. Event ids are given in order below.
_EVENTS: list[tuple[str, str | None, datetime | None]] = [
    # p01: one of every feature type in the lookback, converts inside the horizon (label 1).
    ("p01", IMPRESSION, _ts("2026-01-10 09:00:00")),
    ("p01", AD_CLICK, _ts("2026-01-10 09:00:30")),
    ("p01", PAGE_VIEW, _ts("2026-01-20 12:00:00")),
    ("p01", LINK_CLICK, _ts("2026-01-20 12:01:00")),
    ("p01", PRODUCT_VIEW, _ts("2026-02-01 18:30:00")),
    ("p01", PURCHASE, _ts("2026-02-01 18:45:00")),
    ("p01", DISPLAY, _ts("2026-02-10 08:00:00")),
    ("p01", INTERACT, _ts("2026-02-10 08:00:05")),
    ("p01", DISMISS, _ts("2026-02-11 08:00:00")),
    ("p01", SENT, _ts("2026-02-20 07:00:00")),
    ("p01", OPENED, _ts("2026-02-20 07:30:00")),
    ("p01", CLICKED, _ts("2026-02-20 07:31:00")),
    ("p01", CONVERSION, _ts("2026-03-05 12:00:00")),
    # p02: converted before the cutoff: out of training, flagged converted at scoring.
    ("p02", PAGE_VIEW, _ts("2026-01-20 08:00:00")),
    ("p02", CONVERSION, _ts("2026-02-01 00:00:00")),
    ("p02", SENT, _ts("2026-02-15 00:00:00")),
    # p03: "converts" at the horizon's end, which is the window's end: outside the window, label 0.
    ("p03", PAGE_VIEW, _ts("2026-02-10 06:00:00")),
    ("p03", CONVERSION, _ts("2026-03-16 00:00:00")),
    # p04: converts exactly at the cutoff: not converted before it, labelled 1; an email exactly at the cutoff.
    ("p04", SENT, _ts("2026-02-27 10:00:00")),
    ("p04", OPENED, _ts("2026-03-02 00:00:00")),
    ("p04", CONVERSION, _ts("2026-03-02 00:00:00")),
    # p05: sub-second timestamps, a microsecond before the cutoff and fractions in the recency minutes.
    ("p05", SENT, _ts("2026-03-01 23:59:59.999999")),
    ("p05", OPENED, _ts("2026-02-28 12:00:00.250000")),
    ("p05", CLICKED, _ts("2026-02-28 12:01:00.249999")),  # 59.999999 s after the open: 0 minutes
    ("p05", LINK_CLICK, _ts("2026-02-28 12:02:00.250000")),  # exactly 120 s after the open
    ("p05", PRODUCT_VIEW, _ts("2026-02-28 12:00:00.000001")),
    # p06: ties: two sends at the same instant, a send and an open at the same instant (ids order them).
    ("p06", SENT, _ts("2026-02-14 10:00:00")),
    ("p06", SENT, _ts("2026-02-14 10:00:00")),
    ("p06", OPENED, _ts("2026-02-14 10:00:00")),
    ("p06", CLICKED, _ts("2026-02-14 10:05:00")),
    ("p06", CONVERSION, _ts("2026-03-10 10:00:00")),
    ("p06", CONVERSION, _ts("2026-03-11 10:00:00")),  # two conversions: two cmle training rows
    # p07: recent-window boundaries: exactly 7 and 28 days before the cutoff (inclusive), just before them.
    ("p07", IMPRESSION, _ts("2026-02-23 00:00:00")),
    ("p07", IMPRESSION, _ts("2026-02-22 23:59:59.999999")),
    ("p07", IMPRESSION, _ts("2026-02-02 00:00:00")),
    ("p07", IMPRESSION, _ts("2026-02-01 23:59:59")),
    ("p07", AD_CLICK, _ts("2026-02-23 00:00:00")),
    # p08: at the lookback start (inclusive, the window start) and just before it (outside the window).
    ("p08", DISPLAY, _ts("2026-01-05 00:00:00")),
    ("p08", DISPLAY, _ts("2026-01-04 23:59:59.999999")),
    ("p08", DISMISS, _ts("2026-01-05 00:00:01")),
    # p09: opens without sends (a rate's zero denominator), clicks without opens, interacts without displays.
    ("p09", OPENED, _ts("2026-02-05 05:05:05")),
    ("p09", OPENED, _ts("2026-02-06 05:05:05")),
    ("p09", INTERACT, _ts("2026-02-07 07:07:07")),
    # p10: only a conversion, in the horizon; p11: only a conversion, before the cutoff.
    ("p10", CONVERSION, _ts("2026-03-03 03:03:03")),
    ("p11", CONVERSION, _ts("2026-01-15 15:15:15")),
    # p12: events only after the cutoff (no features, still scored); several days, many types.
    ("p12", PAGE_VIEW, _ts("2026-03-04 00:00:00")),
    ("p12", PRODUCT_VIEW, _ts("2026-03-05 23:59:59.5")),
    ("p12", PURCHASE, _ts("2026-03-06 00:00:00.5")),
    # p13: unknown event type and a missing type among its events; a missing timestamp.
    ("p13", "web.unknownThing", _ts("2026-02-01 00:00:00")),
    ("p13", None, _ts("2026-02-02 00:00:00")),
    ("p13", PAGE_VIEW, None),
    ("p13", PAGE_VIEW, _ts("2026-02-03 00:00:00")),
    # p14: many events of one type on one day and across days (active days, counts, events per day).
    *[("p14", PAGE_VIEW, _ts(f"2026-02-{day:02d} {hour:02d}:00:00")) for day in (16, 17, 17, 25) for hour in (1, 23)],
    ("p14", LINK_CLICK, _ts("2026-02-25 23:59:59.999999")),
    # o01: an orphan (events, no profile): in cmle rows and the EDA, not in the point-in-time features.
    ("o01", SENT, _ts("2026-02-01 01:00:00")),
    ("o01", CONVERSION, _ts("2026-03-08 00:00:00")),
    # (no event without an identity: every backend's ingestion refuses a null identity column)
    ("p13", None, None),
    # after the window's end: outside the window.
    ("p01", PAGE_VIEW, _ts("2026-03-16 00:00:00.000001")),
    ("p15", SENT, _ts("2026-03-20 00:00:00")),
]

# Event ids: mostly "e-NNN", a few chosen so that byte order and a locale's order would differ.
_IDS = [f"e-{i:03d}" for i in range(len(_EVENTS))]
_TIES = [i for i, row in enumerate(_EVENTS) if row[0] == "p06"][:3]  # p06's same-instant send, send, open
for _index, _id in zip(_TIES, ("e_tie", "E-tie", "eTie"), strict=True):
    _IDS[_index] = _id


def events() -> pa.Table:
    """The experience events, in the platform's schema (the extra XDM measure columns stay null)."""
    spec = catalog_spec("experience_events")
    columns = {
        "_id": _IDS,
        "ecid": [row[0] for row in _EVENTS],
        "eventType": [row[1] for row in _EVENTS],
        "timestamp": [row[2] for row in _EVENTS],
    }
    schema = spec.arrow_schema
    data = {name: columns.get(name, [None] * len(_EVENTS)) for name in schema.names}
    data["web_webpagedetails_pageviews"] = [1.0 if row[1] == PAGE_VIEW else None for row in _EVENTS]
    return pa.table(data, schema=schema)


# (ecid, email, gender, birth_year, state, loyalty_tier, loyalty_points, loyalty_join_date)
_PROFILES: list[tuple] = [
    ("p01", "ann@example.com", "female", 1990, "CA", "gold", 1_000, date(2020, 3, 2)),
    ("p02", "Bob@Example.COM", "male", 1985, "NY", "silver", 250, date(2019, 12, 31)),
    ("p03", "carl@example.org", "male", 2000, "TX", "platinum", 1_000_000, date(2026, 3, 2)),  # joined at cutoff
    ("p04", "dora@example.com", "female", 2001, "WA", "bronze", 0, date(2026, 3, 10)),  # joins after the cutoff
    ("p05", "zoë@example.com", "nonbinary", 1990, "CA", "gold", 2_500, date(2000, 1, 1)),
    ("p06", "ZOË.B@example.com", "female", 1945, "ny", "gold", 2_500, date(2010, 6, 15)),
    ("p07", "a@b", "male", None, "CA", None, None, None),  # missing attributes
    ("p08", "", "female", 2007, "", "silver", 10, date(2024, 2, 29)),
    ("p09", "anna.o@example.com", None, 1970, None, "gold", 999_999, date(1999, 12, 31)),
    ("p10", "ben@example.com", "male", 1991, "OR", "bronze", 1, date(2025, 1, 1)),
    ("p11", "cleo@example.com", "female", 1992, "CA", "silver", 2, date(2025, 6, 30)),
    ("p12", "dan@example.com", "male", 1993, "NV", "gold", 3, date(2021, 7, 4)),
    ("p13", "eve@example.com", "female", 1994, "AZ", "platinum", 4, date(2022, 8, 8)),
    ("p14", "fay@example.com", "female", 1995, "CA", "gold", 5, date(2023, 9, 9)),
    ("p15", "gus@example.com", "male", 1996, "NY", "silver", 6, date(2015, 5, 5)),  # events only after the window
    ("p16", "hal@example.com", "male", 1997, "CA", "bronze", 7, date(2016, 6, 6)),  # no events at all
    ("p17", "ida@example.com", "female", 1998, "TX", "gold", 1_000, date(2017, 7, 7)),  # no events at all
]


def profiles() -> pa.Table:
    """The flat profiles, in the platform's schema."""
    names = catalog_spec("profiles").arrow_schema.names
    order = ("ecid", "email", "gender", "birth_year", "state", "loyalty_tier", "loyalty_points", "loyalty_join_date")
    rows = {name: [row[order.index(name)] for row in _PROFILES] for name in names}
    return pa.table(rows, schema=catalog_spec("profiles").arrow_schema)


_OLD = datetime(2026, 3, 16, 6, 0, 0, 123456)
_NEW = datetime(2026, 3, 16, 7, 0, 0, 654321)

# (ecid, score, decile, converted, model_id, run_id, scored_at). The latest run is the newest
# scored_at; two runs share it, and the larger run_id wins.
_SCORES: list[tuple] = [
    # an old run: never shown
    *[(f"p{i:02d}", 0.5, 5, False, "m-old", "run-a", _OLD) for i in range(1, 17)],
    # the losing run of the tie on scored_at
    ("p01", 0.01, 0, False, "m-new", "run-b", _NEW),
    # the latest run: scores at bin edges, 0 and 1 exactly, the converted without a score
    ("p01", 0.999, 9, False, "m-new", "run-c", _NEW),
    ("p02", None, None, True, "m-new", "run-c", _NEW),
    ("p03", 1.0, 9, False, "m-new", "run-c", _NEW),
    ("p04", 0.0, 0, False, "m-new", "run-c", _NEW),
    ("p05", 0.29, 2, False, "m-new", "run-c", _NEW),
    ("p06", 0.1, 1, False, "m-new", "run-c", _NEW),
    ("p07", 0.0009999999, 0, False, "m-new", "run-c", _NEW),
    ("p08", 0.001, 0, False, "m-new", "run-c", _NEW),
    ("p09", 0.5, 5, False, "m-new", "run-c", _NEW),
    ("p10", 0.5000000001, 5, False, "m-new", "run-c", _NEW),
    ("p11", None, None, True, "m-new", "run-c", _NEW),
    ("p12", 0.75, 7, False, "m-new", "run-c", _NEW),
    ("p13", 0.25, 2, False, "m-new", "run-c", _NEW),
    ("p14", 0.123456789, 1, False, "m-new", "run-c", _NEW),
    ("p15", 0.3, 3, False, "m-new", "run-c", _NEW),
    # p16: in the old run only; p17: never scored; a score for an ecid that has no profile.
    ("zz-not-a-profile", 0.6, 6, False, "m-new", "run-c", _NEW),
]


def scores() -> pa.Table:
    """The propensity scores of three runs, in the platform's schema."""
    schema = catalog_spec("propensity_scores").arrow_schema
    return pa.table({name: [row[i] for row in _SCORES] for i, name in enumerate(schema.names)}, schema=schema)
