"""The ``aep`` backend: the Platform port on Adobe Experience Platform (or the local AEP emulator).

:class:`AEPPlatform` is a thin facade over one component per AEP service, named as the emulator's
modules are: :mod:`.registry`, :mod:`.catalog`, :mod:`.ingestion`, :mod:`.queries`, :mod:`.exports`
and :mod:`.destinations` (over the Flow Service helpers of :mod:`.flows`), :mod:`.segmentation`.
"""

from .client import AEPClient, AEPError, Credentials
from .platform import AEPPlatform

__all__ = ["AEPClient", "AEPError", "AEPPlatform", "Credentials"]
