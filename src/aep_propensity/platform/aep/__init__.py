"""The ``aep`` backend: the Platform port on Adobe Experience Platform (or the local AEP emulator)."""

from .backend import AEPPlatform
from .client import AEPClient, AEPError, Credentials

__all__ = ["AEPClient", "AEPError", "AEPPlatform", "Credentials"]
