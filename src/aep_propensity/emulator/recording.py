"""Traffic recording: an ASGI middleware that appends every exchange to a JSON-lines file.

One line per request: ``{"request": {...}, "response": {...}}`` with the method, path, query string,
headers and body of each side. Secrets never reach the file: the ``Authorization`` header and the
secret-looking headers and query parameters (:data:`aep_propensity.log_redaction.SECRET_VARIABLE`) keep
their name with the value masked, and the remaining text passes :func:`aep_propensity.log_redaction.redact`.
Only JSON and text bodies are kept (parsed JSON where it parses); any other body (a Parquet upload, an
IMS form carrying a client secret) is recorded by its size and content type alone.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aep_propensity.log_redaction import MASK, SECRET_VARIABLE, redact

#: The headers whose value is never recorded, besides those :data:`SECRET_VARIABLE` matches.
SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie"})
#: The content types whose body is recorded as text (JSON parsed where it parses).
TEXT_TYPES = ("application/json", "application/problem+json", "text/")


def masked_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI ``raw`` headers as a lowercase-keyed dict, secret values masked (repeated names keep the last)."""
    headers = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        secret = name in SECRET_HEADERS or SECRET_VARIABLE.search(name)
        headers[name] = MASK if secret else redact(value_bytes.decode("latin-1"))
    return headers


def masked_query(query: bytes) -> str:
    """A query string with the values of secret-looking parameters masked."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return urlencode([(key, MASK if SECRET_VARIABLE.search(key) else value) for key, value in pairs])


def recorded_body(body: bytes, content_type: str) -> dict[str, Any]:
    """A body's size and content type, with its content when it is JSON or text (secrets masked)."""
    entry: dict[str, Any] = {"size": len(body), "content_type": content_type}
    if not body or not content_type.lower().startswith(TEXT_TYPES):
        return entry
    text = redact(body.decode("utf-8", errors="replace"))
    try:
        entry["json"] = json.loads(text)
    except ValueError:
        entry["text"] = text
    return entry


class Recorder:
    """ASGI middleware appending every HTTP exchange of ``app`` to ``path`` as one JSON line."""

    def __init__(self, app: ASGIApp, path: Path) -> None:
        """Wrap ``app``; the parent folder of ``path`` is created, the file appended to."""
        self.app = app
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the exchange through, keeping copies of both bodies, and record it once answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_body, response_body = bytearray(), bytearray()
        response: dict[str, Any] = {}

        async def receive_copy() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request_body.extend(message.get("body", b""))
            return message

        async def send_copy(message: Message) -> None:
            if message["type"] == "http.response.start":
                response.update(status=message["status"], headers=masked_headers(message.get("headers", [])))
            elif message["type"] == "http.response.body":
                response_body.extend(message.get("body", b""))
            await send(message)

        headers = masked_headers(scope.get("headers", []))
        request = {
            "method": scope["method"],
            "path": scope["path"],  # as sent: the gateway may strip a trailing slash from the scope
            "query": masked_query(scope.get("query_string", b"")),
            "headers": headers,
        }
        try:
            await self.app(scope, receive_copy, send_copy)
        finally:
            request["body"] = recorded_body(bytes(request_body), headers.get("content-type", ""))
            response["body"] = recorded_body(bytes(response_body), response.get("headers", {}).get("content-type", ""))
            self.append({"request": request, "response": response})

    def append(self, entry: dict[str, Any]) -> None:
        """Append one exchange as a JSON line."""
        line = json.dumps(entry, default=str) + "\n"
        with self.lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line)
