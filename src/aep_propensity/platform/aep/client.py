"""The HTTP client of the ``aep`` backend: one session, the IMS token, AEP's headers, retries, errors, polling.

- One :class:`requests.Session` whose adapter retries 429, 500, 502, 503 and 504 on every method
  (urllib3 ``Retry``, honouring ``Retry-After`` up to ``max_retry_after_seconds``) and failed
  connections, with a timeout on every call. A read timeout is never retried: the server may have
  acted on the request (a POST that creates a batch, a flow, a segment job), so repeating it blindly
  could create a second one; the caller sees the timeout as an :class:`AEPError` instead.
- The OAuth server-to-server token (``POST {ims_url}/ims/token/v3``, form body) is cached and
  renewed before it expires, and once more when a call answers 401 with AEP's ``401013``.
- Every Platform call carries ``Authorization``, ``x-api-key``, ``x-gw-ims-org-id`` and
  ``x-sandbox-name``.
- A failed call raises :class:`AEPError` with the HTTP status, AEP's error code and message.
- The token and the client secret never appear in a log line, an exception or a ``repr``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from ..core.port import PlatformError
from ..core.retries import CappedRetry

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_RETRY_AFTER_SECONDS = 120.0
DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"


class AEPError(PlatformError):
    """An AEP call failed: ``status`` (HTTP), ``code`` (AEP's error code) and AEP's message."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PollTimeout(AEPError):
    """Polling gave up: the operation was still not finished after the poll timeout."""


@dataclass(frozen=True)
class Credentials:
    """An OAuth server-to-server credential; the secret is never shown."""

    client_id: str
    client_secret: str = field(repr=False)
    org_id: str
    scopes: str = DEFAULT_SCOPES

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Credentials:
        """From ``{client_id, client_secret, org_id, scopes}``; a missing value is a clear error."""
        missing = [key for key in ("client_id", "client_secret", "org_id") if not config.get(key)]
        if missing:
            raise ValueError(f"the aep platform needs credentials {missing} (see conf/aep/credentials.yml)")
        scopes = config.get("scopes") or DEFAULT_SCOPES
        if isinstance(scopes, list | tuple):
            scopes = ",".join(scopes)
        return cls(str(config["client_id"]), str(config["client_secret"]), str(config["org_id"]), str(scopes))


def capped_retry(retries: int, backoff_factor: float, max_retry_after_seconds: float) -> CappedRetry:
    """The session's retry policy: connection failures and 429/5xx answers (every method), never read timeouts."""
    return CappedRetry(
        total=retries,
        connect=retries,
        read=0,  # a read timeout is ambiguous: the server may have created what a POST asked for
        status=retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # every method: AEP's POSTs fail transiently too (aepp does the same)
        backoff_factor=backoff_factor,
        respect_retry_after_header=True,
        raise_on_status=False,
        max_retry_after_seconds=max_retry_after_seconds,
    )


def error_from_response(response: requests.Response, what: str) -> AEPError:
    """An :class:`AEPError` from an error answer in any of AEP's shapes (gateway, RFC 7807, IMS)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code, message = None, None
    if isinstance(body, dict):
        if "error_code" in body:  # gateway: {"error_code", "message"}
            code, message = str(body["error_code"]), body.get("message")
        elif "error" in body and isinstance(body["error"], str):  # IMS: {"error", "error_description"}
            code, message = body["error"], body.get("error_description")
        elif "title" in body or "detail" in body:  # services: RFC 7807-like
            chain = body.get("error-chain") or [{}]
            code = chain[0].get("errorCode") or str(body.get("type", "")).rsplit("/", 1)[-1] or None
            message = body.get("detail") or body.get("title")
        else:
            message = body.get("message")
    if message is None:
        message = (response.text or response.reason or "").strip()[:500]
    return AEPError(
        f"{what} failed: HTTP {response.status_code}{f' {code}' if code else ''}: {message}",
        response.status_code,
        code,
    )


class AEPClient:
    """Calls AEP's REST APIs: ``client.call("GET", "/data/foundation/catalog/dataSets")``."""

    def __init__(
        self,
        credentials: Credentials,
        sandbox: str,
        base_url: str = "https://platform.adobe.io",
        ims_url: str = "https://ims-na1.adobelogin.com",
        timeout_seconds: float = 60.0,
        retries: int = 5,
        backoff_factor: float = 0.5,
        poll_interval_seconds: float = 5.0,
        poll_timeout_seconds: float = 3600.0,
        max_retry_after_seconds: float = MAX_RETRY_AFTER_SECONDS,
    ) -> None:
        self.credentials = credentials
        self.sandbox = sandbox
        self.base_url = base_url.rstrip("/")
        self.ims_url = ims_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.poll_timeout_seconds = poll_timeout_seconds
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=capped_retry(retries, backoff_factor, max_retry_after_seconds))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._token: str | None = None
        self._token_expires = 0.0

    def __repr__(self) -> str:
        return (
            f"AEPClient(base_url={self.base_url!r}, sandbox={self.sandbox!r}, client_id={self.credentials.client_id!r})"
        )

    # -- the token ---------------------------------------------------------------------------

    def token(self) -> str:
        """A valid access token: the cached one, or a new one when it is within its renewal margin."""
        if self._token is None or time.monotonic() >= self._token_expires:
            self._fetch_token()
        assert self._token is not None
        return self._token

    def renew_token(self) -> str:
        """Forget the cached token and get a new one (for a service that refused the cached one)."""
        self._token = None
        return self.token()

    def _fetch_token(self) -> None:
        """Ask IMS for a token (client credentials grant) and cache it until shortly before expiry."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
            "scope": self.credentials.scopes,
        }
        try:
            response = self.session.post(f"{self.ims_url}/ims/token/v3", data=form, timeout=self.timeout_seconds)
        except requests.RequestException as exc:
            raise AEPError(f"IMS token request to {self.ims_url} failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise error_from_response(response, "IMS token request")
        body = response.json()
        expires_in = float(body.get("expires_in", 86399))
        self._token = body["access_token"]
        self._token_expires = time.monotonic() + expires_in - min(500.0, expires_in / 10)
        logger.info("Obtained an IMS access token for client %s (valid %d s)", self.credentials.client_id, expires_in)

    def headers(self) -> dict[str, str]:
        """The four headers AEP requires on every call."""
        return {
            "Authorization": f"Bearer {self.token()}",
            "x-api-key": self.credentials.client_id,
            "x-gw-ims-org-id": self.credentials.org_id,
            "x-sandbox-name": self.sandbox,
        }

    # -- calls -------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """One call to ``{base_url}{path}`` with AEP's headers; an error answer raises :class:`AEPError`.

        A 401 with code 401013 (token not valid) renews the token once and repeats the call.
        """
        what = f"{method} {path}"
        response = self._send(method, path, json=json, data=data, params=params, headers=headers)
        if response.status_code == 401 and _error_code(response) == "401013":
            logger.info("%s: access token no longer valid; renewing it once", what)
            self.renew_token()
            response = self._send(method, path, json=json, data=data, params=params, headers=headers)
        if response.status_code >= 400:
            raise error_from_response(response, what)
        logger.debug("%s -> %d", what, response.status_code)
        return response

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        data: bytes | None,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> requests.Response:
        """Send one request (the session's adapter retries transient answers)."""
        merged = {**self.headers(), **(headers or {})}
        if json is not None and "Content-Type" not in merged:
            merged["Content-Type"] = "application/json"
        try:
            return self.session.request(
                method,
                self.base_url + path,
                json=json,
                data=data,
                params=params,
                headers=merged,
                timeout=self.timeout_seconds,
            )
        except requests.RequestException as exc:
            raise AEPError(f"{method} {path} failed: {type(exc).__name__}: {_safe(exc)}") from None

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET and parse the JSON answer."""
        return self.call("GET", path, **kwargs).json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """POST a JSON body and parse the JSON answer (None when the answer is empty)."""
        return _json_or_none(self.call("POST", path, json=body, **kwargs))

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        """PATCH a JSON body and parse the JSON answer (None when the answer is empty)."""
        return _json_or_none(self.call("PATCH", path, json=body, **kwargs))

    def delete(self, path: str, **kwargs: Any) -> Any:
        """DELETE and parse the JSON answer (None when the answer is empty, as a 204 is)."""
        return _json_or_none(self.call("DELETE", path, **kwargs))

    # -- polling -----------------------------------------------------------------------------

    def poll(self, fetch: Callable[[], T], done: Callable[[T], bool], what: str, timeout: float | None = None) -> T:
        """Call ``fetch`` every poll interval until ``done`` holds for its answer; :class:`PollTimeout` after it."""
        limit = self.poll_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            answer = fetch()
            if done(answer):
                return answer
            if time.monotonic() >= deadline:
                raise PollTimeout(f"{what}: not finished after {limit:g} s")
            time.sleep(self.poll_interval_seconds)


def _error_code(response: requests.Response) -> str | None:
    """AEP's gateway error code of an answer, if it has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body.get("error_code")) if isinstance(body, dict) and "error_code" in body else None


def _json_or_none(response: requests.Response) -> Any:
    """The JSON of an answer, or None when it has no body."""
    return response.json() if response.content else None


def _safe(exc: BaseException) -> str:
    """An exception's message cut before any ``Bearer`` (connection errors carry no headers; be sure)."""
    text = str(exc)
    return text.split("Bearer", 1)[0][:300]
