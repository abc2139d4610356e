"""The port's core: the types and operations of the Platform port, and the helpers every backend shares.

:mod:`.port` (types, the :class:`~.port.Platform` protocol, the delivery policy), :mod:`.sql`
(identifiers, literals, transpiling), :mod:`.pql` (audience rules to SQL), :mod:`.chunks`
(conforming ingested chunks), :mod:`.exports` (the Data Landing Zone layout) and
:mod:`.destinations` (files and HTTP). The core imports no backend.
"""
