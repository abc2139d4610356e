"""Recorded emulator traffic (:mod:`aep_propensity.emulator.recording`) validated with openapi-core against
Adobe's specs (:mod:`.specs`): each exchange's operation found, its request and response validated, the
response also against the closed copy of the spec (fields Adobe does not document)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from tests.contract.exceptions import INJECTED, allowed, excused, injected_fault
from tests.contract.specs import HOST, Spec, load_specs

#: A Catalog object id used as a map key (``{"5ac0621f28eb44d09727c911": {...}}``).
ID_KEY = re.compile(r"^[0-9a-f]{24,32}$")
#: Stands for a body recorded by size only (a binary upload): the specs declare such bodies as binary strings.
BINARY = b"\x00binary body recorded by size\x00"


@dataclass(frozen=True)
class Operation:
    """An operation of a spec: its file, method and full path template (base path included)."""

    spec: Spec
    method: str
    template: str

    @property
    def key(self) -> str:
        """``METHOD /full/path/{template}``."""
        return f"{self.method.upper()} {self.template}"


@dataclass
class RecordedRequest:
    """A recorded request in openapi-core's request protocol."""

    method: str
    path: str
    content_type: str
    body: bytes | None
    parameters: RequestParameters
    host_url: str = HOST


@dataclass
class RecordedResponse:
    """A recorded response in openapi-core's response protocol."""

    status_code: int
    content_type: str
    data: bytes | None
    headers: Headers = field(default_factory=Headers)


@dataclass(frozen=True)
class Finding:
    """One problem of one exchange: the operation (or the request line), where, and what."""

    operation: str
    where: str  # "operation", "request", "response" or "undocumented field"
    message: str


def exchanges(recording: Path) -> Iterator[dict[str, Any]]:
    """The exchanges of a recording file, in order."""
    with recording.open(encoding="utf-8") as lines:
        yield from (json.loads(line) for line in lines if line.strip())


def body_bytes(body: dict[str, Any]) -> bytes | None:
    """A recorded body back as bytes: its JSON or text, :data:`BINARY` for one recorded by size, or None."""
    if "json" in body:
        return json.dumps(body["json"]).encode()
    if "text" in body:
        return body["text"].encode()
    return BINARY if body.get("size") else None


def template_pattern(template: str) -> re.Pattern[str]:
    """A regular expression matching the concrete paths of a path template (a parameter: one segment)."""
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")


def find_operation(method: str, path: str, specs: Iterable[Spec]) -> Operation | None:
    """The spec operation of ``method path``: the matching template with the fewest parameters."""
    candidates = [
        Operation(spec, method.lower(), spec.base_path + template)
        for spec in specs
        if path.startswith(spec.base_path + "/")
        for template, item in spec.document["paths"].items()
        if method.lower() in item and template_pattern(spec.base_path + template).match(path)
    ]
    return min(candidates, key=lambda op: op.template.count("{"), default=None)


def request_of(recorded: dict[str, Any]) -> RecordedRequest:
    """openapi-core's view of a recorded request."""
    headers = Headers(recorded["headers"])
    parameters = RequestParameters(
        query=ImmutableMultiDict(parse_qsl(recorded["query"], keep_blank_values=True)), header=headers
    )
    body = recorded["body"]
    return RecordedRequest(
        recorded["method"].lower(), recorded["path"], body["content_type"], body_bytes(body), parameters
    )


def response_of(recorded: dict[str, Any]) -> RecordedResponse:
    """openapi-core's view of a recorded response."""
    body = recorded["body"]
    return RecordedResponse(recorded["status"], body["content_type"], body_bytes(body), Headers(recorded["headers"]))


def messages(errors: Iterable[Exception]) -> list[str]:
    """One line per problem: each schema error with its place (list indexes as ``*``), else the error itself."""
    lines = []
    for error in errors:
        cause = error.__cause__ or error
        schema_errors = getattr(cause, "schema_errors", None) or []
        lines += [schema_message(e) for e in schema_errors] or [f"{type(error).__name__}: {cause}"]
    return sorted(set(lines))


def schema_message(error: Any) -> str:
    """A schema error's place and message; for a failed ``oneOf``/``anyOf``, its alternatives' messages instead."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        return "; ".join(sorted({schema_message(alternative) for alternative in error.context}))[:600]
    if error.validator == "oneOf":
        return f"{place(error.absolute_path)}: valid under more than one oneOf alternative"
    return f"{place(error.absolute_path)}: {error.message[:200]}"


def place(path: Iterable[Any]) -> str:
    """A schema error's place in the document, list indexes and Catalog's id keys as ``*``."""
    return "/".join("*" if isinstance(part, int) or ID_KEY.match(str(part)) else str(part) for part in path) or "."


def check(exchange: dict[str, Any], specs: tuple[Spec, ...]) -> tuple[str, str, list[Finding]]:
    """How one exchange was checked (``allowed``, ``injected``, ``unknown`` or ``validated``), its operation
    key (the request line if no spec holds it) and its findings, excused ones dropped."""
    recorded_request, recorded_response = exchange["request"], exchange["response"]
    line = f"{recorded_request['method']} {recorded_request['path']}"
    if allowed(recorded_request["path"]):
        return "allowed", line, []
    if injected_fault(recorded_response):
        return "injected", INJECTED, []
    operation = find_operation(recorded_request["method"], recorded_request["path"], specs)
    if operation is None:
        return "unknown", line, [Finding(line, "operation", "no operation of Adobe's specs")]
    request, response = request_of(recorded_request), response_of(recorded_response)
    found = [
        Finding(operation.key, "request", m) for m in messages(operation.spec.open.unmarshal_request(request).errors)
    ]
    open_errors = messages(operation.spec.open.unmarshal_response(request, response).errors)
    found += [Finding(operation.key, "response", m) for m in open_errors]
    if not open_errors and 200 <= response.status_code < 300:
        closed_errors = messages(operation.spec.closed.unmarshal_response(request, response).errors)
        found += [Finding(operation.key, "undocumented field", m) for m in closed_errors]
    return "validated", operation.key, [finding for finding in found if not excused(finding, response.status_code)]


@dataclass
class Report:
    """What a recording's validation found: exchanges per kind (:func:`check`), operations per kind, findings."""

    exchanges: dict[str, int] = field(default_factory=dict)
    operations: dict[str, set[str]] = field(default_factory=dict)
    findings: dict[Finding, int] = field(default_factory=dict)

    def failures(self) -> list[Finding]:
        """The findings that fail the contract (undocumented fields are reported, not failed)."""
        return [finding for finding in self.findings if finding.where != "undocumented field"]

    def add(self, kind: str, operation: str, found: list[Finding]) -> None:
        """Count one checked exchange."""
        self.exchanges[kind] = self.exchanges.get(kind, 0) + 1
        self.operations.setdefault(kind, set()).add(operation)
        for finding in found:
            self.findings[finding] = self.findings.get(finding, 0) + 1


def validate(recording: Path) -> Report:
    """Validate every exchange of ``recording`` against Adobe's specs."""
    specs, report = load_specs(), Report()
    for exchange in exchanges(recording):
        report.add(*check(exchange, specs))
    return report
