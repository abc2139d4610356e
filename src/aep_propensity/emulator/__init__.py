"""The local AEP emulator: an HTTP server speaking the subset of AEP's REST contract the aep backend uses.

Start it with ``aep-emulator --host 127.0.0.1 --port 8080`` (see :mod:`.cli` for the options).
Modules: :mod:`.app` (IMS token endpoint, gateway header checks, faults, routers), :mod:`.registry`
(Schema Registry), :mod:`.catalog` (datasets, batch status), :mod:`.ingestion` (Batch Ingestion),
:mod:`.queries` (Query Service), :mod:`.profiles` (Segmentation and profile export jobs),
:mod:`.flows` (Flow Service, ad-hoc runs), :mod:`.identity` (namespaces, DLZ credentials),
:mod:`.xdm_schema` (XDM leaves and flattening), :mod:`.store` (state in PostgreSQL).
"""
