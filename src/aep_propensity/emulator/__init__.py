"""The local AEP emulator: an HTTP server speaking the subset of AEP's REST contract the aep backend uses."""
