"""The emulator's FastAPI application: IMS token endpoint, gateway checks, faults and the AEP routers.

Every AEP path (``/data/...``) passes the fault switches and the checks of AEP's API gateway on the
headers every Experience Platform API call carries: a bearer token (issued here and unexpired),
``x-api-key``, ``x-gw-ims-org-id``, a lower-case ``x-sandbox-name`` and a content type on bodies.
``/emulator/...`` paths are the emulator's own (health, runtime faults, its OpenAPI document): not
AEP paths, used by tests only; all but health need a bearer token the emulator issued.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import catalog, flow_runs, flows, identity, ingestion, profile_exports, queries, registry, segmentation, wire
from .config import EmulatorConfig
from .errors import AEPHTTPError, gateway_error, service_error
from .recording import Recorder
from .service import Emulator, EmulatorDep, JsonBody

logger = logging.getLogger(__name__)

_SANDBOX = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_BODY_TYPES = ("json", "application/octet-stream", "application/x-www-form-urlencoded")


def _form_value(form: Any, query: Any, name: str) -> str:
    """A token-request parameter from the form body or, failing that, the query string."""
    return str(form.get(name) or query.get(name) or "")


def ims_error(status: int, error: str, description: str) -> JSONResponse:
    """IMS's OAuth error body (RFC 6749 shape)."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


async def token(request: Request) -> JSONResponse:
    """``POST /ims/token/v3``: the client-credentials grant for the one configured client."""
    emu: Emulator = request.app.state.emulator
    form = await request.form()
    grant = _form_value(form, request.query_params, "grant_type")
    client_id = _form_value(form, request.query_params, "client_id")
    secret = _form_value(form, request.query_params, "client_secret")
    if grant != "client_credentials":
        return ims_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    if not credentials_match(emu, client_id, secret):
        return ims_error(401, "invalid_client", "invalid client credentials")
    access_token = "emu-" + secrets.token_urlsafe(48)
    ttl = emu.token_ttl
    await run_in_threadpool(emu.store.add_token, access_token, client_id, ttl)
    return JSONResponse({"access_token": access_token, "token_type": "bearer", "expires_in": ttl})


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8 bytes (lone surrogates included, so that no input fails to encode)."""
    return text.encode("utf-8", "surrogatepass")


def credentials_match(emu: Emulator, client_id: str, secret: str) -> bool:
    """Whether both credentials are the configured client's: compared as UTF-8 bytes in constant time
    (any text, ASCII or not, is just a mismatch), both always compared, so that neither a wrong id
    nor a wrong secret can be told apart."""
    id_ok = hmac.compare_digest(_utf8(client_id), _utf8(emu.config.client_id))
    secret_ok = hmac.compare_digest(_utf8(secret), _utf8(emu.config.client_secret))
    return id_ok and secret_ok


def check_headers(emu: Emulator, request: Request) -> str:
    """Apply the gateway's header checks; returns the sandbox name or raises AEP's error."""
    headers = request.headers
    authorization = headers.get("authorization", "")
    if not authorization:
        raise gateway_error(403, "403010", "Oauth token is missing.")
    access_token = authorization.removeprefix("Bearer ").strip()
    if not authorization.startswith("Bearer ") or not emu.store.token_valid(access_token):
        raise gateway_error(401, "401013", "Oauth token is not valid")
    api_key = headers.get("x-api-key")
    if not api_key:
        raise gateway_error(403, "403000", "Api Key is required")
    if api_key != emu.config.client_id:
        raise gateway_error(403, "403003", "Api Key is invalid")
    org = headers.get("x-gw-ims-org-id")
    if not org:
        raise gateway_error(400, "400003", "Missing header: x-gw-ims-org-id")
    if org != emu.config.org_id:
        raise gateway_error(403, "403025", "Profile is not valid")
    sandbox = headers.get("x-sandbox-name", "prod")
    if not _SANDBOX.match(sandbox):
        raise gateway_error(
            400, "400003", f"Invalid header: x-sandbox-name {sandbox!r} must be a lower-case sandbox name"
        )
    if request.method in ("POST", "PUT", "PATCH") and int(headers.get("content-length") or 0) > 0:
        content_type = headers.get("content-type", "")
        if not any(kind in content_type for kind in _BODY_TYPES):
            raise AEPHTTPError(
                400,
                {
                    "type": "/placeholder/type/uri",
                    "status": 400,
                    "title": "BadRequestError",
                    "detail": "A valid content-type must be specified",
                },
            )
    return sandbox


def injected_fault(emu: Emulator) -> AEPHTTPError | None:
    """The 429 or 500 the fault switches call for on this platform call, if any."""
    faults = emu.faults
    if not (faults.get("rate_limit_every") or faults.get("error_every")):
        return None
    number = emu.count_call()
    every = int(faults.get("rate_limit_every") or 0)
    if every and number % every == 0:
        retry_after = str(faults.get("retry_after", 1))
        return AEPHTTPError(
            429, {"error_code": "429001", "message": "Too many requests"}, headers={"Retry-After": retry_after}
        )
    every = int(faults.get("error_every") or 0)
    if every and number % every == 0:
        return service_error(
            500, "EMU-5000-500", "internal error injected by the emulator's error_every fault", "GATEWAY"
        )
    return None


async def gateway(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Trailing-slash tolerance, faults and header checks in front of every AEP path."""
    path = request.scope["path"]
    if len(path) > 1 and path.endswith("/"):
        request.scope["path"] = path.rstrip("/")
    if not request.scope["path"].startswith("/data/"):
        return await call_next(request)
    emu: Emulator = request.app.state.emulator
    fault = injected_fault(emu)
    if fault is not None:
        emu.count_injected()
        return fault.response()
    try:
        request.state.sandbox = await run_in_threadpool(check_headers, emu, request)
    except AEPHTTPError as error:
        return error.response()
    return await call_next(request)


async def aep_error(request: Request, exc: Exception) -> Response:
    """Answer an :class:`AEPHTTPError` with its body."""
    assert isinstance(exc, AEPHTTPError)
    return exc.response()


async def validation_error(request: Request, exc: Exception) -> Response:
    """A malformed request body or parameter: 400 in AEP's problem shape."""
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return service_error(400, "EMU-1400-400", f"invalid request: {problems}", "GATEWAY").response()


async def http_error(request: Request, exc: Exception) -> Response:
    """The framework's own errors (no such path, a method the path does not allow): AEP's problem shape,
    code ``EMU-1<status>-<status>``, e.g. ``EMU-1404-404``, with the framework's headers (``Allow``)."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    error = service_error(status, f"EMU-1{status}-{status}", detail, "GATEWAY")
    return JSONResponse(error.body, status_code=status, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure: a 500 problem document, the details only in the emulator's log."""
    logger.exception("internal error on %s %s", request.method, request.url.path)
    return service_error(500, "EMU-5000-500", "internal error in the emulator", "GATEWAY").response()


def create_app(config: EmulatorConfig) -> FastAPI:
    """The emulator's application for ``config`` (connects to PostgreSQL on startup)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        emu = Emulator(config)
        app.state.emulator = emu
        relay = wire.Relay(queries.server_address(config.dsn), lambda: ingestion.limit(emu, "interactive_rows"))
        await relay.start(config.host, config.wire_port)
        emu.wire_port = relay.port
        ingestion.resume_batches(emu)
        queries.resume_queries(emu)
        segmentation.fail_unfinished_jobs(emu)
        profile_exports.fail_unfinished_jobs(emu)
        flow_runs.fail_unfinished_runs(emu)
        logger.info(
            "AEP emulator on %s (schema %s, Query Service wire port %d)", config.base_url, config.schema, relay.port
        )
        yield
        await relay.close()
        emu.close()

    app = FastAPI(title="AEP emulator", lifespan=lifespan, docs_url=None, openapi_url=None)
    app.middleware("http")(gateway)
    if config.record is not None:  # outermost: it records the gateway's answers too
        app.add_middleware(Recorder, path=config.record)
    app.add_exception_handler(AEPHTTPError, aep_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_api_route("/ims/token/v3", token, methods=["POST"])
    app.add_api_route("/emulator/health", health, methods=["GET"])
    token_needed = [Depends(require_token)]
    app.add_api_route("/emulator/faults", get_faults, methods=["GET"], dependencies=token_needed)
    app.add_api_route("/emulator/faults", set_faults, methods=["POST"], dependencies=token_needed)
    app.add_api_route("/emulator/openapi.json", openapi, methods=["GET"], dependencies=token_needed)
    for module in (registry, catalog, ingestion, queries, segmentation, profile_exports, flows, flow_runs, identity):
        app.include_router(module.router)
    return app


def health(emu: EmulatorDep) -> dict[str, str]:
    """``GET /emulator/health`` (not an AEP path): the emulator is up and its store answers."""
    emu.store.all("none")
    return {"status": "ok", "tenant": emu.config.tenant}


def require_token(request: Request, emu: EmulatorDep) -> None:
    """The emulator's own endpoints need a bearer token it issued and that has not expired (AEP's
    gateway errors otherwise): whoever reaches its port cannot change its faults or map its API."""
    authorization = request.headers.get("authorization", "")
    if not authorization:
        raise gateway_error(403, "403010", "Oauth token is missing.")
    if not authorization.startswith("Bearer ") or not emu.store.token_valid(authorization.removeprefix("Bearer ")):
        raise gateway_error(401, "401013", "Oauth token is not valid")


def openapi(request: Request) -> dict[str, Any]:
    """``GET /emulator/openapi.json`` (not an AEP path): the OpenAPI document of the emulator's routes."""
    return request.app.openapi()


def get_faults(emu: EmulatorDep) -> dict[str, Any]:
    """``GET /emulator/faults`` (not an AEP path): the current fault switches and how many 429s and 500s
    they injected since they were set."""
    return {"faults": emu.faults, "injected": emu.injected}


def set_faults(body: JsonBody, emu: EmulatorDep) -> dict[str, Any]:
    """``POST /emulator/faults`` (test-only, not an AEP path): replace the fault switches."""
    try:
        return emu.set_faults(body)
    except ValueError as exc:
        raise service_error(400, "EMU-1400-400", str(exc), "EMULATOR") from None
