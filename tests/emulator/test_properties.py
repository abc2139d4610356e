"""Property-based tests of the emulator against Adobe's own OpenAPI specifications (specs/aep-openapi/).

Schemathesis generates requests for every operation of the specs that the emulator implements (its
routers' method and path) and sends them, with a valid token and the gateway headers, to a running
emulator on loopback (the specs' ``servers`` are Adobe's hosts): requests that follow the spec with
generated ids, the same on existing objects (seeded ids), and requests that break the spec (Schemathesis'
negative mode, where an operation has a body or query parameters). Every answer must be no server error
(``not_a_server_error``) and every error AEP's error body with its code: the gateway's
``{"error_code", "message"}`` with a code of its status (``403010`` for 403), a service's problem
document ``{"type", "title", "status", ...}`` whose status is the answer's and whose code
(``.../errors/XDM-1010-404``, repeated in ``error-chain``) ends with it, or AEP's untyped
``/placeholder/type/uri`` problem. Bounded and repeatable: ``MAX_EXAMPLES`` derandomized cases per
operation and mode, no example database, under a minute in all. Every case is generated: none is
left out as a known failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.emulator_process import RunningEmulator

from .conftest import AEPClient
from .helpers import (
    CATALOG,
    FLOWS,
    IMPORT,
    PROFILE,
    QUERY,
    SR,
    UPS,
    XED,
    dataset,
    field_group,
    ingest,
    parquet_bytes,
    run_query,
    schema,
)

pytestmark = pytest.mark.postgres

SPECS = Path(__file__).resolve().parents[2] / "specs" / "aep-openapi"
MAX_EXAMPLES = 15

# Per spec file: the emulator's base path (the path of the spec's server) and the spec's operations the
# emulator implements, as the spec spells them (the routers of src/aep_propensity/emulator/).
IMPLEMENTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "schema-registry.yaml": (
        "/data/foundation/schemaregistry",
        (
            "GET /stats",
            "GET /{CONTAINER_ID}/fieldgroups",
            "GET /{CONTAINER_ID}/fieldgroups/{FIELD_GROUP_ID}",
            "POST /tenant/fieldgroups",
            "DELETE /tenant/fieldgroups/{FIELD_GROUP_ID}",
            "GET /{CONTAINER_ID}/mixins",
            "GET /{CONTAINER_ID}/mixins/{MIXIN_ID}",
            "POST /tenant/mixins",
            "GET /{CONTAINER_ID}/schemas",
            "GET /{CONTAINER_ID}/schemas/{SCHEMA_ID}",
            "POST /tenant/schemas",
            "PATCH /tenant/schemas/{SCHEMA_ID}",
            "DELETE /tenant/schemas/{SCHEMA_ID}",
            "GET /{CONTAINER_ID}/descriptors",
            "GET /{CONTAINER_ID}/descriptors/{DESCRIPTOR_ID}",
            "POST /tenant/descriptors",
        ),
    ),
    "catalog.yaml": (
        "/data/foundation/catalog",
        (
            "GET /dataSets",
            "POST /dataSets",
            "GET /dataSets/{DATASET_ID}",
            "PATCH /dataSets/{DATASET_ID}",
            "DELETE /dataSets/{DATASET_ID}",
            "GET /batches",
            "GET /batches/{BATCH_ID}",
        ),
    ),
    "batch-ingestion.yaml": (
        "/data/foundation/import",
        (
            "POST /batches",
            "PUT /batches/{batchId}/datasets/{datasetId}/files/{filePath}",
            "PATCH /batches/{batchId}/datasets/{datasetId}/files/{filePath}",
            "POST /batches/{batchId}/datasets/{datasetId}/files/{filePath}",
            "POST /batches/{batchId}",
        ),
    ),
    "query-service.yaml": (
        "/data/foundation/query",
        (
            "GET /connection_parameters",
            "GET /queries",
            "POST /queries",
            "GET /queries/{queryid}",
            "PATCH /queries/{queryid}",
        ),
    ),
    "segmentation.yaml": (
        "/data/core/ups",
        (
            "GET /segment/definitions",
            "POST /segment/definitions",
            "GET /segment/definitions/{SEGMENT_ID}",
            "PATCH /segment/definitions/{SEGMENT_ID}",
            "DELETE /segment/definitions/{SEGMENT_ID}",
            "GET /segment/jobs",
            "POST /segment/jobs",
            "GET /segment/jobs/{SEGMENT_JOB_ID}",
            "GET /export/jobs",
            "POST /export/jobs",
            "GET /export/jobs/{EXPORT_JOB_ID}",
        ),
    ),
    "flow-service.yaml": (
        "/data/foundation/flowservice",
        (
            "GET /connections",
            "POST /connections",
            "GET /connections/{BASE_CONNECTION_ID}",
            "DELETE /connections/{BASE_CONNECTION_ID}/",
            "GET /sourceConnections",
            "POST /sourceConnections",
            "GET /sourceConnections/{SOURCE_CONNECTION_ID}",
            "DELETE /sourceConnections/{SOURCE_CONNECTION_ID}",
            "GET /targetConnections",
            "POST /targetConnections",
            "GET /targetConnections/{TARGET_CONNECTION_ID}",
            "DELETE /targetConnections/{TARGET_CONNECTION_ID}",
            "GET /flows",
            "POST /flows",
            "GET /flows/{FLOW_ID}",
            "PATCH /flows/{FLOW_ID}",
            "DELETE /flows/{FLOW_ID}",
            "GET /runs",
            "GET /runs/{RUN_ID}",
        ),
    ),
    "ad-hoc-activation.yaml": ("/data/core/activation/disflowprovider", ("POST /adhocrun",)),
    "identity-service.yaml": ("/data/core", ("GET /idnamespace/identities", "POST /idnamespace/identities")),
}

OPERATIONS = [(spec, operation) for spec, (_, operations) in IMPLEMENTED.items() for operation in operations]
# The path parameters the ``seeded`` fixture names an existing object for (the tenant container is
# always pinned: the emulator keeps no global one, and a random one is only a 404 of an unknown path).
SEEDED_PARAMETERS = (
    "FIELD_GROUP_ID",
    "MIXIN_ID",
    "SCHEMA_ID",
    "DATASET_ID",
    "BATCH_ID",
    "batchId",
    "datasetId",
    "queryid",
    "SEGMENT_ID",
    "BASE_CONNECTION_ID",
    "SOURCE_CONNECTION_ID",
    "TARGET_CONNECTION_ID",
    "FLOW_ID",
)
# Operations on existing objects, but no DELETE (it would take them from the operations after it).
SEEDED = [
    (spec, operation)
    for spec, operation in OPERATIONS
    if not operation.startswith("DELETE") and any("{" + name + "}" in operation for name in SEEDED_PARAMETERS)
]


DLZ_SPEC = {"id": "10440537-2a7b-4583-ac39-ed38d4b848e8", "version": "1.0"}
DLZ_FLOW_SPEC = {"id": "cd2fc47e-e838-4f38-a581-8fff2f99b63a", "version": "1.0"}
DATASET_SOURCE_SPEC = {"id": "23598e46-f560-407b-88d5-ea6207e49db0", "version": "1.0"}

PLACEHOLDER_TYPE = "/placeholder/type/uri"
_SERVICE_CODE = re.compile(r"^http://ns\.adobe\.com/aep/errors/([A-Z]+-\d{4}-(\d{3}))$")


@cache
def load_spec(name: str) -> OpenApiSchema:
    """A spec of specs/aep-openapi/ as Schemathesis loads it (without strict validation: Adobe's files
    are not all valid OpenAPI)."""
    return schemathesis.openapi.from_path(SPECS / name)


def negatable(spec: str, operation: str) -> bool:
    """Whether the operation has a JSON body or query parameters to break (its headers are the gateway's
    and its path parameters any text, so that nothing else can be)."""
    method, path = operation.split(" ", 1)
    found = load_spec(spec).find_operation_by_path(method, path)
    return len(found.query) > 0 or any(body.media_type == "application/json" for body in found.body)


NEGATABLE = [(spec, operation) for spec, operation in OPERATIONS if negatable(spec, operation)]


def gateway_error_problem(body: dict[str, Any], status: int) -> str | None:
    """What is wrong with a gateway error body ``{"error_code", "message"}`` of ``status``, if anything."""
    code, message = body.get("error_code"), body.get("message")
    if not isinstance(code, str) or not code.startswith(str(status)):
        return f"gateway error_code {code!r} is not a code of status {status}"
    if not isinstance(message, str) or not message:
        return "gateway error without a message"
    return None


def service_error_problem(body: dict[str, Any], status: int) -> str | None:
    """What is wrong with a service problem document ``{"type", "title", "status", ...}`` of ``status``."""
    found = _SERVICE_CODE.match(str(body.get("type")))
    if found is None or found.group(2) != str(status):
        return f"problem type {body.get('type')!r} does not carry a code of status {status}"
    if body.get("status") != status or not isinstance(body.get("title"), str):
        return f"problem status {body.get('status')!r} or title {body.get('title')!r} wrong for {status}"
    chain = body.get("error-chain") or [{}]
    if chain[0].get("errorCode") != found.group(1):
        return f"error-chain {chain!r} does not name the code {found.group(1)}"
    return None


def placeholder_problem(body: dict[str, Any], status: int) -> str | None:
    """What is wrong with AEP's untyped problem document ``{"type": "/placeholder/type/uri", "status",
    "title": "...Error", "detail"}`` (Catalog's, quoted in segmentation.yaml; the gateway's answer to a
    body without a valid content type), if anything: its code is its title."""
    title = body.get("title")
    if body.get("status") != status or not isinstance(title, str) or not title.endswith("Error"):
        return f"placeholder problem status {body.get('status')!r} or title {title!r} wrong for {status}"
    if not isinstance(body.get("detail"), str):
        return "placeholder problem without a detail"
    return None


def error_problem(body: Any, status: int) -> str | None:
    """What is wrong with an error answer's JSON body, if anything: it must be AEP's gateway or service
    error body with a code of its status."""
    if not isinstance(body, dict):
        return f"error body {body!r} is not a JSON object"
    if "error_code" in body:
        return gateway_error_problem(body, status)
    if body.get("type") == PLACEHOLDER_TYPE:
        return placeholder_problem(body, status)
    return service_error_problem(body, status)


def headers_of(api: AEPClient, spec: str) -> dict[str, str]:
    """The gateway headers, with Schema Registry's XED ``Accept`` (any other is its 406)."""
    return {**api.headers, **XED} if spec == "schema-registry.yaml" else api.headers


@schemathesis.check
def aep_error_shape(ctx: Any, response: Any, case: Case) -> bool | None:
    """Every 4xx answer is AEP's error body with its code."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = response.text
    problem = error_problem(body, response.status_code)
    if problem is not None:
        raise Failure(operation=case.operation.label, title="Not AEP's error shape", message=problem)
    return None


@pytest.fixture(scope="module")
def api(emulator: RunningEmulator) -> Iterator[AEPClient]:
    """A client of the module's emulator (its token and gateway headers); on the way out, the emulator's
    log must hold no traceback (an error the answers hid)."""
    yield AEPClient(emulator.url)
    assert "Traceback" not in emulator.log.read_text()


def path_parameters(path: str, seeded: dict[str, str]) -> dict[str, str]:
    """The path parameters of ``path`` that name a seeded object (the tenant container included)."""
    known = {"CONTAINER_ID": "tenant", **seeded}
    return {name: ident for name, ident in known.items() if "{" + name + "}" in path}


def check_operation(
    api: AEPClient, spec: str, operation: str, pinned: dict[str, str], mode: GenerationMode = GenerationMode.POSITIVE
) -> None:
    """``MAX_EXAMPLES`` requests of one operation generated in ``mode`` (``pinned`` path parameters fixed),
    less the known failures: no 5xx, every error in AEP's error shape with its code."""
    method, path = operation.split(" ", 1)
    base_url, headers = api.url + IMPLEMENTED[spec][0], headers_of(api, spec)
    found = load_spec(spec).find_operation_by_path(method, path)
    strategy = found.as_strategy(mode, headers=headers, path_parameters=pinned or None)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run (CI): wider searches raise MAX_EXAMPLES locally
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def answers_aep(case: Case) -> None:
        checks = [not_a_server_error, aep_error_shape]
        case.call_and_validate(base_url=base_url, headers=headers, checks=checks, timeout=30)

    answers_aep()


@pytest.fixture(scope="module")
def seeded(api: AEPClient) -> dict[str, str]:
    """Existing objects for the by-id operations: path parameter -> id (schemas by ``meta:altId``)."""
    group = field_group(api, {"score": "number"}, title="property scores")
    created = schema(api, [PROFILE, group["$id"]], title="property schema")
    dataset_id = dataset(api, "property scores", created["$id"])
    batch = ingest(api, dataset_id, {"s.parquet": parquet_bytes([{"_acme": {"score": 0.5}}])})
    loading = api.ok(
        "POST", IMPORT + "/batches", 201, json={"datasetId": dataset_id, "inputFormat": {"format": "parquet"}}
    )
    definition = {
        "name": "property segment",
        "schema": {"name": "_xdm.context.profile"},
        "expression": {"type": "PQL", "format": "pql/text", "value": "_acme.score >= 0.5"},
    }
    base = api.ok("POST", FLOWS + "/connections", 201, json={"name": "dlz", "connectionSpec": DLZ_SPEC})
    target = {"name": "t", "baseConnectionId": base["id"], "connectionSpec": DLZ_SPEC, "params": {"path": "p"}}
    target_id = api.ok("POST", FLOWS + "/targetConnections", 201, json=target)["id"]
    source = {"name": "s", "connectionSpec": DATASET_SOURCE_SPEC, "params": {"datasets": [dataset_id]}}
    source_id = api.ok("POST", FLOWS + "/sourceConnections", 201, json=source)["id"]
    flow = {
        "name": "f",
        "flowSpec": DLZ_FLOW_SPEC,
        "sourceConnectionIds": [source_id],
        "targetConnectionIds": [target_id],
    }
    return {
        "FIELD_GROUP_ID": group["meta:altId"],
        "MIXIN_ID": group["meta:altId"],
        "SCHEMA_ID": created["meta:altId"],
        "DATASET_ID": dataset_id,
        "BATCH_ID": batch["id"],
        "batchId": loading["id"],
        "datasetId": dataset_id,
        "queryid": run_query(api, "SELECT 1")["id"],
        "SEGMENT_ID": api.ok("POST", UPS + "/segment/definitions", json=definition)["id"],
        "BASE_CONNECTION_ID": base["id"],
        "SOURCE_CONNECTION_ID": source_id,
        "TARGET_CONNECTION_ID": target_id,
        "FLOW_ID": api.ok("POST", FLOWS + "/flows", 201, json=flow)["id"],
    }


@pytest.mark.parametrize(("spec", "operation"), OPERATIONS, ids=[f"{s}:{o}" for s, o in OPERATIONS])
def test_operation_answers_aep(api: AEPClient, spec: str, operation: str) -> None:
    """Generated requests, generated ids: no 5xx, every error in AEP's error shape with its code."""
    check_operation(api, spec, operation, path_parameters(operation, {}))


@pytest.mark.parametrize(("spec", "operation"), SEEDED, ids=[f"{s}:{o}" for s, o in SEEDED])
def test_operation_on_real_objects(api: AEPClient, seeded: dict[str, str], spec: str, operation: str) -> None:
    """Generated requests on existing objects (their ids pinned): no 5xx, every error AEP's."""
    check_operation(api, spec, operation, path_parameters(operation, seeded))


@pytest.mark.parametrize(("spec", "operation"), NEGATABLE, ids=[f"{s}:{o}" for s, o in NEGATABLE])
def test_invalid_requests_answer_aep(api: AEPClient, spec: str, operation: str) -> None:
    """Requests that break the spec (wrong types, missing required fields, bad query values): no 5xx,
    every error in AEP's error shape with its code."""
    check_operation(api, spec, operation, path_parameters(operation, {}), GenerationMode.NEGATIVE)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/data/foundation/schemaregistry/tenant/fieldgroups", '{"title": "a\\u0000b"}', 400, "EMU-1400-400"),
        ("POST", "/data/core/idnamespace/identities", '{"code": "x", "name": "\\ud800"}', 400, "EMU-1400-400"),
        ("GET", "/data/foundation/catalog/dataSets/a%00b", None, 404, "CAT-1404-404"),
        ("GET", "/data/foundation/schemaregistry/global/schemas", None, 404, "EMU-1404-404"),
        ("PUT", "/data/foundation/query/connection_parameters", None, 405, "EMU-1405-405"),
        ("POST", UPS + "/export/jobs", '{"filter": 1, "destination": {"datasetId": "d"}}', 400, "UPS-1400-400"),
        ("POST", UPS + "/segment/jobs", '[{"segmentId": 7}]', 404, "UPS-1404-404"),
        ("POST", SR + "/tenant/fieldgroups", '{"title": "t", "definitions": []}', 400, "XDM-1000-400"),
        (
            "POST",
            SR + "/tenant/mixins",
            '{"title": "t", "properties": {"_acme": {"properties": 1}}}',
            400,
            "XDM-1000-400",
        ),
        (
            "POST",
            SR + "/tenant/descriptors",
            '{"@type": "xdm:descriptorIdentity", "xdm:sourceSchema": 1}',
            400,
            "XDM-1000-400",
        ),
        ("POST", SR + "/tenant/schemas", '{"title": "t", "allOf": 1}', 400, "XDM-1000-400"),
        ("POST", UPS + "/segment/definitions", '{"name": "n", "schema": {}, "expression": []}', 400, "UPS-1400-400"),
        (
            "POST",
            UPS + "/segment/definitions",
            '{"name": "n", "schema": {}, "expression": {"value": 1}}',
            400,
            "UPS-1400-400",
        ),
        ("POST", CATALOG + "/dataSets", '{"name": "n", "schemaRef": "s"}', 400, "CAT-1400-400"),
        (
            "POST",
            QUERY + "/queries",
            '{"dbName": "prod:all", "sql": "SELECT 1", "ctasParameters": 1}',
            400,
            "QS-1400-400",
        ),
        (
            "POST",
            QUERY + "/queries",
            '{"dbName": "prod:all", "sql": "SELECT 1", "insertIntoParameters": []}',
            400,
            "QS-1400-400",
        ),
        ("POST", QUERY + "/queries", '{"dbName": 1, "sql": 2}', 400, "QS-1400-400"),
        ("POST", FLOWS + "/connections", '{"name": "x", "connectionSpec": 7}', 400, "FLOW-1400-400"),
        ("POST", FLOWS + "/flows", '{"name": "x", "flowSpec": "dlz"}', 400, "FLOW-1400-400"),
    ],
)
def test_found_cases(api: AEPClient, method: str, path: str, body: str | None, status: int, code: str) -> None:
    """The cases the generated requests found, fixed: text PostgreSQL cannot store (NUL, a lone surrogate)
    is a 400, not a 500; a NUL or non-text id is not found; the framework's 404 and 405 are AEP's problem
    documents; a field of the wrong JSON type is a 400 naming it: an export job's filter, a field group's
    definitions or nested properties, a descriptor's xdm:sourceSchema, a schema's allOf, a segment
    definition's expression or expression.value, a dataset's schemaRef, a query's dbName, sql,
    ctasParameters or insertIntoParameters, a connection's connectionSpec, a flow's flowSpec."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    response = api.call(method, path, headers=headers, data=body)
    assert response.status_code == status, response.text
    assert error_problem(response.json(), status) is None
    assert response.json()["error-chain"][0]["errorCode"] == code
