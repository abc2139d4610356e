"""``aep-emulator``: start the local AEP emulator (FastAPI on uvicorn) on a loopback port.

The web framework comes with the ``emulator`` extra, so this module imports it only to start the
server: without the extra, ``aep-emulator`` says how to install it and exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from aep_propensity import log_redaction

from .config import EmulatorConfig, env_default, load_faults, load_limits

#: The top-level modules the ``emulator`` extra installs (python-multipart's is ``multipart`` or
#: ``python_multipart``), and what to say when one is missing.
EXTRA_MODULES = frozenset({"fastapi", "starlette", "uvicorn", "multipart", "python_multipart", "jsonpatch"})
MISSING_EXTRA = "aep-emulator: the emulator needs its extra: pip install 'aep-propensity[emulator]' (missing: {})"


#: The levels of ``--log-level``; whatever the level, no secret is logged (:mod:`aep_propensity.log_redaction`).
LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_args(argv: list[str] | None = None) -> tuple[EmulatorConfig, str]:
    """The emulator's configuration from the command line and the environment, and its log level."""
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(prog="aep-emulator", description="A local AEP emulator backed by PostgreSQL.")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument(
        "--wire-port",
        type=int,
        default=int(env_default("AEP_EMULATOR_WIRE_PORT", str(defaults.wire_port))),
        help="Query Service's PostgreSQL wire port (default 0: a free port, named by the connection parameters)",
    )
    parser.add_argument("--dsn", default=env_default("AEP_EMULATOR_PG_DSN", defaults.dsn), help="PostgreSQL DSN")
    parser.add_argument("--schema", default=env_default("AEP_EMULATOR_SCHEMA", defaults.schema))
    parser.add_argument("--data-dir", default=env_default("AEP_EMULATOR_DATA_DIR", str(defaults.data_dir)))
    parser.add_argument("--client-id", default=env_default("AEP_EMULATOR_CLIENT_ID", defaults.client_id))
    parser.add_argument("--client-secret", default=env_default("AEP_EMULATOR_CLIENT_SECRET", defaults.client_secret))
    parser.add_argument("--org-id", default=env_default("AEP_EMULATOR_ORG_ID", defaults.org_id))
    parser.add_argument("--tenant", default=env_default("AEP_EMULATOR_TENANT", defaults.tenant))
    parser.add_argument("--token-ttl", type=int, default=defaults.token_ttl, help="token lifetime in seconds")
    parser.add_argument(
        "--query-timeout-seconds",
        type=int,
        default=int(env_default("AEP_EMULATOR_QUERY_TIMEOUT_SECONDS", str(defaults.query_timeout_seconds))),
        help="statement timeout of queries-API SQL (default 600: Query Service's 10-minute ad-hoc limit)",
    )
    parser.add_argument(
        "--faults", default=os.environ.get("AEP_EMULATOR_FAULTS"), help="fault switches: a JSON file or inline JSON"
    )
    parser.add_argument(
        "--limits",
        default=os.environ.get("AEP_EMULATOR_LIMITS"),
        help="AEP limits to lower (config.LIMITS: files_per_batch, rows_per_file, interactive_rows, ...): JSON",
    )
    parser.add_argument(
        "--record",
        default=os.environ.get("AEP_EMULATOR_RECORD"),
        help="append every request and response to this JSON-lines file (secrets masked, binary bodies by size)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=env_default("AEP_EMULATOR_LOG_LEVEL", "info").lower(),
        help="the log level (default info); no level logs a secret",
    )
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        wire_port=args.wire_port,
        dsn=args.dsn,
        schema=args.schema,
        data_dir=Path(args.data_dir),
        client_id=args.client_id,
        client_secret=args.client_secret,
        org_id=args.org_id,
        tenant=args.tenant,
        token_ttl=args.token_ttl,
        query_timeout_seconds=args.query_timeout_seconds,
        faults=load_faults(args.faults),
        limits=load_limits(args.limits),
        record=Path(args.record) if args.record else None,
    )
    return config, args.log_level


def main(argv: list[str] | None = None) -> None:
    """Run the emulator until interrupted; without the ``emulator`` extra, exit with a one-line message."""
    config, log_level = parse_args(argv)
    log_redaction.register_secret(config.client_secret)
    log_redaction.install()
    try:
        import uvicorn  # noqa: PLC0415 - the optional extra, imported only to serve

        from .app import create_app  # noqa: PLC0415 - imports FastAPI
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in EXTRA_MODULES:
            raise
        sys.exit(MISSING_EXTRA.format(exc.name))
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # At DEBUG, every request is logged too (uvicorn's access log), the secrets in a query string masked.
    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, access_log=log_level == "debug")


if __name__ == "__main__":
    main()
