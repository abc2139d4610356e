"""A small JSON Patch (RFC 6902) subset: ``add``, ``replace`` and ``remove`` with JSON pointers."""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """A patch that cannot be applied."""


def _parts(pointer: str) -> list[str]:
    """The unescaped reference tokens of a JSON pointer."""
    if not pointer.startswith("/"):
        raise PatchError(f"path {pointer!r} is not a JSON pointer")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _parent(doc: Any, parts: list[str], create: bool) -> Any:
    """The container holding the last token of ``parts`` (objects created on ``add``)."""
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_index(node, part, False)]
        elif isinstance(node, dict):
            if part not in node:
                if not create:
                    raise PatchError(f"path segment {part!r} does not exist")
                node[part] = {}
            node = node[part]
        else:
            raise PatchError(f"path segment {part!r} is not inside an object or array")
    return node


def _index(items: list[Any], token: str, adding: bool) -> int:
    """A list index from a pointer token (``-`` appends when adding)."""
    if token == "-" and adding:
        return len(items)
    if not token.isdigit() or int(token) > len(items) - (0 if adding else 1):
        raise PatchError(f"array index {token!r} is out of range")
    return int(token)


def apply_patch(doc: dict[str, Any], operations: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the operations applied, or a :class:`PatchError`."""
    if isinstance(operations, dict):
        operations = [operations]
    if not isinstance(operations, list) or not operations:
        raise PatchError("a JSON patch is a non-empty array of operations")
    result = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError("each patch operation needs 'op' and 'path'")
        _apply(result, operation)
    return result


def _apply(doc: dict[str, Any], operation: dict[str, Any]) -> None:
    """Apply one operation in place."""
    op, parts = operation["op"], _parts(operation["path"])
    if op not in ("add", "replace", "remove"):
        raise PatchError(f"patch operation {op!r} is not supported")
    if op != "remove" and "value" not in operation:
        raise PatchError(f"'{op}' needs a value")
    parent = _parent(doc, parts, create=op == "add")
    last = parts[-1]
    if isinstance(parent, list):
        index = _index(parent, last, op == "add")
        if op == "add":
            parent.insert(index, operation["value"])
        elif op == "replace":
            parent[index] = operation["value"]
        else:
            del parent[index]
        return
    if not isinstance(parent, dict):
        raise PatchError(f"path {operation['path']!r} does not lead into an object or array")
    if op != "add" and last not in parent:
        raise PatchError(f"path {operation['path']!r} does not exist")
    if op == "remove":
        del parent[last]
    else:
        parent[last] = operation["value"]
