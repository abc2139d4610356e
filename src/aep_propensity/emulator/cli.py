def main() -> None:
    """Placeholder until the emulator lands."""
    raise SystemExit("aep-emulator: not built yet")
