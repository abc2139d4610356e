"""AEP's error bodies: gateway header errors and the services' RFC 7807-like problem documents."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse


class AEPHTTPError(Exception):
    """An error answer: an HTTP status and AEP's JSON body for it."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON response carrying this error."""
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def gateway_error(status: int, code: str, message: str) -> AEPHTTPError:
    """An error of AEP's API gateway: ``{"error_code", "message"}``, e.g. ``401013`` for an invalid token."""
    return AEPHTTPError(status, {"error_code": code, "message": message})


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Resource not found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    412: "Precondition Failed",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


def service_error(status: int, code: str, detail: str, service: str = "XDM", sandbox: str = "prod") -> AEPHTTPError:
    """A service error in the RFC 7807-like problem shape AEP's services answer with, e.g. code ``XDM-1010-404``."""
    body = {
        "type": f"http://ns.adobe.com/aep/errors/{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "report": {
            "registryRequestId": str(uuid.uuid4()),
            "timestamp": datetime.now(UTC).strftime("%m-%d-%Y %H:%M:%S"),
            "detailed-message": detail,
            "sub-errors": [],
            "tenantInfo": {"sandboxName": sandbox},
            "additionalContext": None,
        },
        "error-chain": [{"serviceId": service, "errorCode": code, "invokingServiceId": "emulator"}],
        "detail": detail,
    }
    return AEPHTTPError(status, body)


def not_found(what: str, ident: str, service: str, code: str) -> AEPHTTPError:
    """A 404 problem document naming the missing resource."""
    return service_error(404, code, f"{what} {ident!r} was not found", service)


def bad_request(detail: str, service: str, code: str) -> AEPHTTPError:
    """A 400 problem document."""
    return service_error(400, code, detail, service)


_JSON_KINDS: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}


def of_kind(value: Any, kind: type, field: str, service: str, code: str) -> Any:
    """``value`` (a request field) if it is null or of the JSON ``kind`` (dict, list or str), else a 400
    problem document of ``service`` naming ``field``."""
    if value is not None and not isinstance(value, kind):
        raise bad_request(f"{field} must be {_JSON_KINDS[kind]}", service, code)
    return value


def message_of(exc: BaseException) -> str:
    """A failed job's one-line message: a problem document's detail, else the exception's text."""
    if isinstance(exc, AEPHTTPError):
        return str(exc.body.get("detail") or exc.body.get("message") or exc)
    return str(exc)
