"""Adobe's OpenAPI specifications (specs/aep-openapi/) loaded for openapi-core, each ``servers`` list
rewritten from Adobe's host to :data:`HOST` with the same base path, and a closed copy of each for
response validation (every object schema with properties refuses the fields it does not list)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import yaml
from openapi_core import OpenAPI
from openapi_core.configurations import Config

from tests.conftest import PROJECT

SPEC_DIR = PROJECT / "specs" / "aep-openapi"
#: The host recorded requests are replayed against (the recording keeps paths only).
HOST = "http://emulator"
#: The schema keywords whose members :func:`closed_schemas` leaves open.
COMPOSITIONS = frozenset({"allOf", "oneOf", "anyOf"})
#: The specs loaded without openapi-spec-validator: sandbox.yaml's PackageResponse schema still fails
#: it after the patches listed in specs/aep-openapi/README.md (no operation of this project uses it).
UNVALIDATED = frozenset({"sandbox.yaml"})


@dataclass(frozen=True)
class Spec:
    """One spec file: its name, base path, and openapi-core objects, open (as published) and closed."""

    name: str
    base_path: str
    document: dict[str, Any]
    open: OpenAPI
    closed: OpenAPI


def string_keys(node: Any) -> Any:
    """``node`` with every mapping key a string (YAML reads response codes such as ``200:`` as integers)."""
    if isinstance(node, dict):
        return {str(key): string_keys(value) for key, value in node.items()}
    if isinstance(node, list):
        return [string_keys(value) for value in node]
    return node


def without_empty_content(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with its responses' empty ``content: {}`` maps removed: no body, in OpenAPI 3.0, where
    openapi-core would demand one (MissingData)."""
    for item in document["paths"].values():
        for operation in item.values():
            for response in (operation.get("responses") or {}).values() if isinstance(operation, dict) else ():
                if response.get("content") == {}:
                    del response["content"]
    return document


def base_path(document: dict[str, Any]) -> str:
    """The path part of a spec's first server URL (``//{environment}.adobe.io/data/foundation/catalog``)."""
    return urlsplit(document["servers"][0]["url"]).path.rstrip("/")


def closed_schemas(node: Any, member: bool = False) -> Any:
    """A copy of ``node`` where every ``type: object`` schema with ``properties`` and no ``additionalProperties``
    refuses other fields; the members of a composition stay open (an ``allOf`` member lists only part of
    the object's fields, a closed ``oneOf`` alternative would refuse its siblings' fields)."""
    if isinstance(node, list):
        return [closed_schemas(value, member) for value in node]
    if not isinstance(node, dict):
        return node
    closed = {
        key: closed_schemas(value, member=key in COMPOSITIONS) if key != "example" else value
        for key, value in node.items()
    }
    schema = node.get("type") == "object" and isinstance(node.get("properties"), dict)
    if schema and "additionalProperties" not in node and not member:
        closed["additionalProperties"] = False
    return closed


def openapi(document: dict[str, Any], checked: bool) -> OpenAPI:
    """openapi-core's object for ``document``, checked by openapi-spec-validator if ``checked``."""
    return OpenAPI.from_dict(document, config=Config() if checked else Config(spec_validator_cls=None))


@cache
def load_specs() -> tuple[Spec, ...]:
    """Every spec of :data:`SPEC_DIR`, servers pointing at :data:`HOST`, longest base path first."""
    specs = []
    for path in sorted(SPEC_DIR.glob("*.yaml")):
        document = without_empty_content(string_keys(yaml.safe_load(path.read_text())))
        base = base_path(document)
        document["servers"] = [{"url": HOST + base}]
        as_published = openapi(document, checked=path.name not in UNVALIDATED)
        specs.append(Spec(path.name, base, document, as_published, openapi(closed(document), checked=False)))
    return tuple(sorted(specs, key=lambda spec: -len(spec.base_path)))


def closed(document: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``document`` with its schemas closed (:func:`closed_schemas`)."""
    return closed_schemas(copy.deepcopy(document))


def spec_line(name: str, text: str) -> str:
    """``name:line`` of the first line of spec ``name`` containing ``text`` (for exception notes)."""
    lines = (SPEC_DIR / name).read_text().splitlines()
    return f"{name}:{next(number for number, line in enumerate(lines, 1) if text in line)}"
