"""No secret in any log, at any level: every log record's message is redacted before a handler sees it.

Kedro traces its hooks at DEBUG with their arguments, among them ``after_catalog_created``'s
``conf_creds`` (the resolved credentials, the client secret in clear), and any library's DEBUG log may
carry a connection string or a header. :func:`install` wraps the logging module's record factory, so
every record the process makes, whatever its logger, handler or logging configuration, has masked:

- the value of a credential-like key (``'client_secret': '...'``, ``password=...``, ``access_token: ...``);
- the password of a URL (``postgresql://user:password@host``) and a bearer token;
- every known secret value wherever it appears: the values of environment variables whose names say
  they hold one (``AEP_CLIENT_SECRET``, ``*_PASSWORD``, ``*_TOKEN``...), read when :func:`install` runs,
  and values given to :func:`register_secret` (the emulator's client secret from its command line).

The project installs it when Kedro imports its settings and when the emulator starts. Levels are
untouched: DEBUG logs everything it did, with the secrets replaced by :data:`MASK`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable

MASK = "***"

#: Key names whose values are secrets: the key ends with one of these words (``client_secret``,
#: ``access_token``, ``AEP_CLIENT_SECRET``), whatever the case.
SECRET_WORDS = (
    r"secret|password|passwd|token|api[_-]?key|access[_-]?key|account[_-]?key|private[_-]?key|"
    r"secret[_-]?key|connection[_-]?string|authorization"
)
#: A secret key and its value, in a dict's repr, YAML, JSON, a query string or ``KEY=value``.
KEY_VALUE = re.compile(
    rf"""(?P<key>\b[\w.-]*(?:{SECRET_WORDS})['"]?\s*[:=]\s*)(?P<value>'[^']*'|"[^"]*"|[^\s,;&'"{{}}()\[\]]+)""",
    re.IGNORECASE,
)
#: The password of a URL's user information (``scheme://user:password@host``).
URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)[^\s/@'\"]+(?=@)", re.IGNORECASE)
#: A bearer token (an ``Authorization`` header's value).
BEARER = re.compile(r"(?P<prefix>\bBearer\s+)[\w.~+/-]+=*", re.IGNORECASE)
#: Environment variables whose values are secrets (their names contain one of the words).
SECRET_VARIABLE = re.compile(SECRET_WORDS, re.IGNORECASE)
#: Shorter values are not taken as secrets to mask everywhere (they would mask ordinary words).
MIN_SECRET_LENGTH = 8

_registered: set[str] = set()
_from_environment: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in a log from now on (values under 8 characters are ignored)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _registered.add(value)


def environment_secrets() -> set[str]:
    """The values of the environment variables whose names say they hold a secret."""
    return {
        value for name, value in os.environ.items() if SECRET_VARIABLE.search(name) and len(value) >= MIN_SECRET_LENGTH
    }


def _masked_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "'\"" else ""
    return f"{match['key']}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """``text`` with every known secret value, credential-like key's value, URL password and bearer
    token replaced by :data:`MASK`."""
    for secret in sorted(_registered | _from_environment, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = BEARER.sub(rf"\g<prefix>{MASK}", text)
    text = KEY_VALUE.sub(_masked_value, text)
    return URL_PASSWORD.sub(rf"\g<prefix>{MASK}", text)


def redact_record(record: logging.LogRecord) -> None:
    """Redact the record's message where it holds a secret: its format and string arguments one by one
    when that suffices (formatters that read the arguments, as uvicorn's access log, keep them), else
    the whole message, its arguments merged in."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record: its handler reports it as logging always does
        return
    redacted = redact(message)
    if redacted == message:
        return
    if isinstance(record.msg, str) and isinstance(record.args, tuple):
        record.msg = redact(record.msg)
        record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        try:
            if record.getMessage() == redacted:
                return
        except Exception:  # noqa: BLE001 - the arguments no longer fit the format: merge them below
            pass
    record.msg, record.args = redacted, ()


def _redacting(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """A record factory that makes records with ``factory`` and redacts them."""

    def make_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        redact_record(record)
        return record

    make_record.redacts_secrets = True  # type: ignore[attr-defined]
    return make_record


def install() -> None:
    """Redact every log record of this process from now on (once; calling again re-reads the environment)."""
    _from_environment.clear()
    _from_environment.update(environment_secrets())
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts_secrets", False):
        logging.setLogRecordFactory(_redacting(factory))
