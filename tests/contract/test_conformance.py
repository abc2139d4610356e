"""The contract checker itself, on hand-made exchanges (the emulator run's traffic is validated in
tests/test_emulator_run.py, which records it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.contract.conformance import check, validate
from tests.contract.exceptions import INJECTED
from tests.contract.specs import HOST, load_specs

HEADERS = {"authorization": "***", "x-api-key": "***", "x-gw-ims-org-id": "EMULATOR@AdobeOrg", "x-sandbox-name": "prod"}
PARAMETERS = {"username": "u", "dbName": "postgres", "host": "127.0.0.1", "port": 5432, "version": 1, "token": "***"}


def exchange(path: str, status: int, body: Any, method: str = "GET") -> dict[str, Any]:
    """A recorded exchange with AEP's headers and a JSON response ``body``."""
    response_body = {"size": len(json.dumps(body)), "content_type": "application/json", "json": body}
    return {
        "request": {
            "method": method,
            "path": path,
            "query": "",
            "headers": HEADERS,
            "body": {"size": 0, "content_type": ""},
        },
        "response": {"status": status, "headers": {"content-type": "application/json"}, "body": response_body},
    }


def test_every_spec_loads_with_its_servers_on_the_emulator_host() -> None:
    specs = load_specs()
    assert len(specs) == 11
    assert all(spec.document["servers"] == [{"url": HOST + spec.base_path}] for spec in specs)


def test_a_conforming_exchange_has_no_finding_and_an_extra_field_is_reported() -> None:
    path = "/data/foundation/query/connection_parameters"
    kind, operation, found = check(exchange(path, 200, PARAMETERS), load_specs())
    assert (kind, operation, found) == ("validated", f"GET {path}", [])
    _, _, found = check(exchange(path, 200, {**PARAMETERS, "extra": 1}), load_specs())
    assert [finding.where for finding in found] == ["undocumented field"]


def test_a_wrong_type_or_an_unknown_status_is_a_violation() -> None:
    path = "/data/foundation/query/connection_parameters"
    _, _, found = check(exchange(path, 200, {**PARAMETERS, "port": "5432"}), load_specs())
    assert [(finding.where, finding.message) for finding in found] == [
        ("response", "port: '5432' is not of type 'integer'")
    ]
    _, _, found = check(exchange(path, 418, {}), load_specs())
    assert [finding.message for finding in found] == ["ResponseNotFound: Unknown response http status: 418"]


def test_operations_outside_the_specs_fail_unless_allow_listed(tmp_path: Path) -> None:
    exchanges = [
        exchange("/data/foundation/catalog/nothing", 200, {}),
        exchange("/ims/token/v3", 200, {"access_token": "***"}, method="POST"),
        exchange("/emulator/health", 200, {"status": "ok"}),
        exchange("/data/foundation/catalog/dataSets", 429, {"error_code": "429001", "message": "Too many requests"}),
    ]
    recording = tmp_path / "traffic.jsonl"
    recording.write_text("".join(json.dumps(one) + "\n" for one in exchanges))
    report = validate(recording)
    assert report.exchanges == {"unknown": 1, "allowed": 2, "injected": 1}
    assert report.operations["injected"] == {INJECTED}
    assert [(f.operation, f.where) for f in report.failures()] == [
        ("GET /data/foundation/catalog/nothing", "operation")
    ]
