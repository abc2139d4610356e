"""The simulated people as the platform's flat rows: experience events and profiles.

Event rows carry the XDM-derived measures of their type; profile attributes are drawn per person,
in default mode in line with the person's engagement.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
from scipy.special import digamma, ndtri, polygamma

from .ids import ecids, email_addresses, event_ids
from .params import SimulationParams
from .simulator import TYPE_NAMES, Events

US_STATES = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH "
    "OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY"
).split()
LOYALTY_TIERS = ("member", "silver", "gold", "platinum", "diamond")
_TIER_SHARES = (0.40, 0.25, 0.20, 0.10, 0.05)  # default mode, from the least to the most engaged
GENDERS = ("female", "male", "not_specified")

# Flat event columns: identity and XDM-derived measures (1.0 where the original sets the field).
_MEASURES = {
    "web_webpagedetails_pageviews": {"web.webpagedetails.pageViews"},
    "web_webinteraction_linkclicks": {
        "advertising.clicks",
        "commerce.purchases",
        "web.webinteraction.linkClicks",
        "web.formFilledOut",
        "decisioning.propositionInteract",
        "decisioning.propositionDismiss",
    },
    "directmarketing_sends": {"directMarketing.emailSent"},
    "directmarketing_opens": {"directMarketing.emailOpened", "directMarketing.emailClicked"},
    "directmarketing_clicks": {"directMarketing.emailClicked"},
}


def events_table(events: Events, person_index: np.ndarray, params: SimulationParams, seed: int) -> pa.Table:
    """The flat experience-event rows of one simulated chunk, their ids seeded by ``seed``."""
    starts = np.r_[0, np.cumsum(np.bincount(events.person, minlength=len(person_index)))]
    rank = np.arange(len(events)) - starts[events.person]
    start_us = np.datetime64(params.window.start, "us").astype(np.int64)
    columns = {
        "_id": event_ids(seed, person_index[events.person], rank),
        # Dictionary-encoded: each person's ECID and each type name are stored once per chunk.
        "ecid": pa.DictionaryArray.from_arrays(pa.array(events.person.astype(np.int32)), ecids(person_index)),
        "eventType": pa.DictionaryArray.from_arrays(pa.array(events.code.astype(np.int32)), pa.array(TYPE_NAMES)),
        "timestamp": pa.array(events.time + start_us, pa.timestamp("us")),
    }
    for column, types in _MEASURES.items():
        flags = np.array([name in types for name in TYPE_NAMES])[events.code]
        columns[column] = pa.array(np.where(flags, 1.0, np.nan), mask=~flags)
    return pa.table(columns)


def _engagement_score(engagement: np.ndarray, shape: float) -> np.ndarray:
    """log(engagement) standardised to mean 0, variance 1 (exact moments of a log-gamma variable)."""
    mean = digamma(shape) - np.log(shape)
    return (np.log(engagement) - mean) / np.sqrt(polygamma(1, shape))


def profiles_table(
    person_index: np.ndarray, engagement: np.ndarray, params: SimulationParams, rng: np.random.Generator
) -> pa.Table:
    """The flat profile rows of one chunk of people.

    In default mode loyalty tier, points and tenure rise with engagement; in cmle mode every
    attribute is drawn independently of behaviour, as the original's mimesis profiles were.
    """
    n = len(person_index)
    gender = rng.choice(len(GENDERS), size=n, p=(0.48, 0.48, 0.04))
    birth_year = rng.integers(1945, 2008, size=n)
    state = rng.integers(len(US_STATES), size=n)
    window_start = params.window.start.date()
    if params.mode == "cmle":
        tier = rng.integers(len(LOYALTY_TIERS), size=n)
        points = rng.integers(0, 1_000_001, size=n)
        first, last = date(2000, 1, 1).toordinal(), date(2023, 12, 31).toordinal()
        join_ordinal = rng.integers(first, last + 1, size=n)
    else:
        affinity = 0.6 * _engagement_score(engagement, params.engagement_shape) + 0.8 * rng.standard_normal(n)
        tier = np.searchsorted(ndtri(np.cumsum(_TIER_SHARES)[:-1]), affinity)
        points = np.minimum(np.rint(np.exp(rng.normal(np.log(2_000) + 0.8 * affinity, 1.0))), 1_000_000)
        tenure_days = rng.exponential(4 * 365.25 * np.exp(0.3 * affinity))
        join_ordinal = window_start.toordinal() - np.minimum(tenure_days, 25 * 365.25).astype(np.int64) - 1
    epoch = date(1970, 1, 1).toordinal()
    return pa.table(
        {
            "ecid": ecids(person_index),
            "email": email_addresses(person_index),
            "gender": pa.array(GENDERS).take(pa.array(gender)),
            "birth_year": pa.array(birth_year.astype(np.int64)),
            "state": pa.array(US_STATES).take(pa.array(state)),
            "loyalty_tier": pa.array(LOYALTY_TIERS).take(pa.array(tier)),
            "loyalty_points": pa.array(points.astype(np.int64)),
            "loyalty_join_date": pa.array((join_ordinal - epoch).astype(np.int32), pa.date32()),
        }
    )
