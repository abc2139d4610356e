"""The local AEP emulator: an HTTP server speaking a subset of AEP's REST contract (what the aep backend uses,
and a little more: profile export jobs, identity namespaces).

Start it with ``aep-emulator --host 127.0.0.1 --port 8642`` (see :mod:`.cli` for the options).
Modules: :mod:`.app` (IMS token endpoint, gateway header checks, faults, routers), :mod:`.registry`
(Schema Registry), :mod:`.catalog` (datasets, batch status), :mod:`.ingestion` (Batch Ingestion),
:mod:`.queries` (Query Service), :mod:`.profiles` (the union profile), :mod:`.segmentation`
(segment definitions and jobs), :mod:`.profile_exports` (profile export jobs), :mod:`.flows` (Flow
Service), :mod:`.flow_runs` (ad-hoc runs of its flows), :mod:`.identity` (namespaces, DLZ
credentials), :mod:`.xdm_schema` (XDM leaves and flattening), :mod:`.store` (state in PostgreSQL).

It is a local platform with an HTTP face: it builds on :mod:`aep_propensity.platform.core` and the
local backend (:mod:`aep_propensity.platform.local`, on PostgreSQL), never on the aep backend.
FastAPI, uvicorn, python-multipart and jsonpatch come with its extra:
``pip install 'aep-propensity[emulator]'``.

PostgreSQL layout: dataset tables (and the local platform's ``ledger_*`` tables) in the schema
``--schema``; the emulator's own state (``emu_*`` tables) in ``<schema>_state``.

Security: this is a local test double, not a service. Its Query Service is its PostgreSQL, reached
with the emulator's own role: anyone who can reach the emulator (or the PostgreSQL it advertises in
its connection parameters) can run arbitrary SQL as that role, including on the state schema. Bind
it to 127.0.0.1 (the default) and never expose it; the IMS credentials only keep honest clients honest.

Known differences from AEP:

- The 50,000-row cap on interactive Query Service reads is not enforced here: clients connect
  with psycopg2 straight to PostgreSQL, which knows nothing of the cap. The aep backend enforces
  it itself (reads above it go through a dataset export).
- Queries run in PostgreSQL's dialect, and only Data Landing Zone flows run.
"""
