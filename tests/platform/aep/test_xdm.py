"""The flat <-> XDM mapping: known paths, tenant fields, nested Arrow, SQL in both styles."""

from __future__ import annotations

from datetime import date, datetime

import pyarrow as pa
import pytest

from aep_propensity.platform.aep.xdm import (
    DIRECT_MARKETING_GROUP,
    EVENT_CLASS,
    LOYALTY_GROUP,
    PERSON_GROUP,
    PERSONAL_GROUP,
    PROFILE_CLASS,
    WEB_GROUP,
    camel_case,
    check_path,
    flat_column,
    flat_view_sql,
    identity_path,
    mapping_for,
    path_sql,
    to_nested,
)
from aep_propensity.platform.core.port import Column, DatasetSpec

PROFILES = DatasetSpec(
    "profiles",
    (
        Column("ecid", "string"),
        Column("email", "string"),
        Column("birth_year", "int64"),
        Column("loyalty_points", "int64"),
        Column("loyalty_join_date", "date"),
    ),
    identity="ecid",
    profile_enabled=True,
)
EVENTS = DatasetSpec(
    "experience_events",
    (
        Column("_id", "string"),
        Column("ecid", "string"),
        Column("eventType", "string"),
        Column("timestamp", "timestamp"),
        Column("web_webpagedetails_pageviews", "float64"),
        Column("directmarketing_clicks", "float64"),
    ),
    identity="ecid",
)
SCORES = DatasetSpec(
    "propensity_scores",
    (Column("ecid", "string"), Column("score", "float64"), Column("decile", "int64"), Column("run_id", "string")),
    identity="ecid",
)


def test_raw_columns_map_to_known_paths() -> None:
    profiles = mapping_for(PROFILES, "acme")
    assert profiles.xdm_class == PROFILE_CLASS
    assert [f.path for f in profiles.fields] == [
        "_acme.userid",
        "personalEmail.address",
        "person.birthYear",
        "loyalty.points",
        "loyalty.joinDate",
    ]
    assert profiles.standard_groups == (PERSON_GROUP, PERSONAL_GROUP, LOYALTY_GROUP)
    assert profiles.identity is not None and profiles.identity.path == "_acme.userid"
    events = mapping_for(EVENTS, "acme")
    assert events.xdm_class == EVENT_CLASS
    paths = {f.column: f.path for f in events.fields}
    assert paths["web_webpagedetails_pageviews"] == "web.webPageDetails.pageViews.value"
    assert paths["eventType"] == "eventType"
    assert events.standard_groups == (WEB_GROUP, DIRECT_MARKETING_GROUP)
    scores = mapping_for(SCORES, "acme")
    assert [f.path for f in scores.fields] == [
        "_acme.userid",
        "_acme.propensity",
        "_acme.propensityDecile",
        "_acme.runId",
    ]


def test_unmapped_columns_go_under_the_tenant_in_camel_case() -> None:
    spec = DatasetSpec("ledger", (Column("job_id", "string"), Column("members", "int64"), Column("_id", "string")))
    mapping = mapping_for(spec, "zeta")
    assert [f.path for f in mapping.fields] == ["_zeta.jobId", "_zeta.members", "_zeta.id"]
    assert [f.xdm_type for f in mapping.fields] == ["string", "integer", "string"]
    assert camel_case("web_webpagedetails_pageviews") == "webWebpagedetailsPageviews"


def test_standard_leaves_keep_their_xdm_type() -> None:
    mapping = mapping_for(PROFILES, "acme")
    types = {f.column: (f.flat_type, f.xdm_type) for f in mapping.fields}
    assert types["loyalty_points"] == ("int64", "number")
    assert types["birth_year"] == ("int64", "integer")
    assert types["loyalty_join_date"] == ("date", "date")


def test_tenant_field_group_json() -> None:
    body = mapping_for(SCORES, "acme").field_group_json()
    tenant = body["definitions"]["customFields"]["properties"]["_acme"]["properties"]
    assert tenant["propensity"]["type"] == "number"
    assert tenant["propensityDecile"] == {
        "title": "propensityDecile",
        "type": "integer",
        "meta:xdmType": "long",
        "description": "propensity_scores.decile",
    }
    assert body["meta:intendedToExtend"] == [PROFILE_CLASS]
    assert body["title"].startswith("aep-propensity propensity_scores fields ")
    events = mapping_for(EVENTS, "acme").field_group_json()
    assert list(events["definitions"]["customFields"]["properties"]["_acme"]["properties"]) == ["userid"]


def test_schema_and_descriptor_bodies() -> None:
    mapping = mapping_for(PROFILES, "acme")
    schema = mapping.schema_json("https://ns.adobe.com/acme/mixins/abc")
    assert [ref["$ref"] for ref in schema["allOf"]] == [
        PROFILE_CLASS,
        PERSON_GROUP,
        PERSONAL_GROUP,
        LOYALTY_GROUP,
        "https://ns.adobe.com/acme/mixins/abc",
    ]
    descriptor = mapping.identity_descriptor("https://ns.adobe.com/acme/schemas/x")
    assert descriptor["xdm:sourceProperty"] == "/_acme/userid"
    assert descriptor["xdm:namespace"] == "ECID" and descriptor["xdm:isPrimary"] is True


def test_flat_table_becomes_nested_structs() -> None:
    flat = pa.table(
        {
            "ecid": ["a", "b"],
            "email": ["a@x.org", None],
            "birth_year": [1980, 1990],
            "loyalty_points": [10, 20],
            "loyalty_join_date": [date(2020, 1, 2), None],
        }
    )
    nested = to_nested(flat, mapping_for(PROFILES, "acme"))
    assert nested.column_names == ["_acme", "personalEmail", "person", "loyalty"]
    assert nested.to_pylist()[0] == {
        "_acme": {"userid": "a"},
        "personalEmail": {"address": "a@x.org"},
        "person": {"birthYear": 1980},
        "loyalty": {"points": 10.0, "joinDate": date(2020, 1, 2)},
    }
    assert nested.schema.field("loyalty").type.field("points").type == pa.float64()


def test_nested_events_keep_top_level_fields() -> None:
    flat = pa.table(
        {
            "_id": ["e1"],
            "ecid": ["a"],
            "eventType": ["web.webpagedetails.pageViews"],
            "timestamp": pa.array([datetime(2026, 8, 3, 12)], pa.timestamp("us")),
            "web_webpagedetails_pageviews": [1.0],
            "directmarketing_clicks": [None],
        },
        schema=pa.schema(
            [
                ("_id", pa.string()),
                ("ecid", pa.string()),
                ("eventType", pa.string()),
                ("timestamp", pa.timestamp("us")),
                ("web_webpagedetails_pageviews", pa.float64()),
                ("directmarketing_clicks", pa.float64()),
            ]
        ),
    )
    row = to_nested(flat, mapping_for(EVENTS, "acme")).to_pylist()[0]
    assert row["_id"] == "e1" and row["eventType"] == "web.webpagedetails.pageViews"
    assert row["web"] == {"webPageDetails": {"pageViews": {"value": 1.0}}}
    assert row["directMarketing"] == {"clicks": {"value": None}}


def test_one_flattening_rule_and_the_identity_path() -> None:
    assert flat_column("web.webPageDetails.pageViews.value") == "web_webpagedetails_pageviews_value"
    assert path_sql("loyalty.joinDate", flatten=True).sql("postgres") == f'"{flat_column("loyalty.joinDate")}"'
    assert identity_path("acme") == "_acme.userid" == mapping_for(PROFILES, "acme").identity.path
    with pytest.raises(ValueError, match="invalid XDM path"):
        flat_column("a.b; DROP")


def test_path_sql_in_both_styles() -> None:
    assert path_sql("_acme.userid", flatten=False).sql("spark") == "_acme.userid"
    assert path_sql("_acme.userid", flatten=True).sql("postgres") == '"_acme_userid"'
    assert (
        path_sql("web.webPageDetails.pageViews.value", flatten=True).sql("postgres")
        == '"web_webpagedetails_pageviews_value"'
    )
    assert path_sql("eventType", flatten=True).sql("postgres") == '"eventtype"'
    with pytest.raises(ValueError, match="invalid XDM path"):
        check_path('_acme.userid"; DROP TABLE x; --')


def test_flat_view_sql() -> None:
    mapping = mapping_for(EVENTS, "acme")
    assert flat_view_sql(mapping, "experience_events_xdm", True, "postgres") == (
        'CREATE OR REPLACE VIEW "experience_events" AS SELECT "_id" AS "_id", "_acme_userid" AS "ecid", '
        '"eventtype" AS "eventType", "timestamp" AS "timestamp", '
        '"web_webpagedetails_pageviews_value" AS "web_webpagedetails_pageviews", '
        '"directmarketing_clicks_value" AS "directmarketing_clicks" FROM "experience_events_xdm"'
    )
    profiles = flat_view_sql(mapping_for(PROFILES, "acme"), "profiles_xdm", False, "spark")
    assert "CAST(loyalty.points AS BIGINT) AS `loyalty_points`" in profiles
    assert profiles.startswith(
        "CREATE OR REPLACE VIEW `profiles` AS SELECT _acme.userid AS `ecid`, personalEmail.address"
    )


def test_bad_tenant_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid tenant"):
        mapping_for(PROFILES, "Acme; drop")
