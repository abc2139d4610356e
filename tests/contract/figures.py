"""Coverage figures of the contract: the operations the backend used (in a recording), the operations the
emulator serves (each generic Flow Service route counted once per collection it serves), how many were
validated, and the exceptions. ``python -m tests.contract.figures RECORDING`` prints them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from aep_propensity.emulator.app import create_app
from aep_propensity.emulator.config import EmulatorConfig
from tests.contract.conformance import Report, find_operation, validate
from tests.contract.exceptions import ALLOWED, KNOWN_DEVIATIONS, SPEC_ERRATA, allowed
from tests.contract.specs import load_specs

#: The collections the emulator's generic ``/flowservice/{collection}`` routes serve (emulator ``flows.py``).
FLOW_COLLECTIONS = ("flows", "connections", "sourceConnections", "targetConnections")


def concrete_paths(template: str) -> list[str]:
    """Sample concrete paths of an emulator route: one per collection for ``{collection}``, other parameters ``x1``."""
    collections = FLOW_COLLECTIONS if "{collection}" in template else ("",)
    return [re.sub(r"\{[^}]+\}", "x1", template.replace("{collection}", name)) for name in collections]


def served_operations() -> list[tuple[str, str | None]]:
    """Each operation the emulator serves (``METHOD path``) and the spec operation it is, None if no spec holds it."""
    specs = load_specs()
    served = []
    for template, item in create_app(EmulatorConfig()).openapi()["paths"].items():
        for method in item:
            for path in concrete_paths(template):
                operation = find_operation(method, path, specs)
                served.append((f"{method.upper()} {path}", operation.key if operation else None))
    return served


def figures(report: Report) -> list[str]:
    """The figures as printable lines."""
    served = served_operations()
    in_specs = {key for _, key in served if key}
    outside = sorted(line for line, key in served if key is None and not allowed(line.split(" ", 1)[1]))
    validated = report.operations.get("validated", set())
    used = validated | report.operations.get("unknown", set())
    used_allowed = {line for line in report.operations.get("allowed", set()) if "/emulator/" not in line}
    undocumented = {finding.operation for finding in report.findings if finding.where == "undocumented field"}
    return [
        f"backend: {len(used) + len(used_allowed)} operations used ({len(used_allowed)} allow-listed: "
        f"{', '.join(sorted(used_allowed))})",
        f"emulator: {len(served)} operations served, {len(in_specs)} of them in Adobe's specs, "
        f"{len(served) - len(in_specs) - len(outside)} allow-listed, outside the specs: {outside or 'none'}",
        f"validated: {len(validated)} operations in {report.exchanges.get('validated', 0)} exchanges "
        f"({report.exchanges.get('injected', 0)} injected 429/500 exchanges not validated), "
        f"{len(validated & in_specs)} of the emulator's {len(in_specs)} spec operations",
        f"exceptions: {len(ALLOWED)} allow-listed paths, {len(SPEC_ERRATA)} spec errata, "
        f"{len(KNOWN_DEVIATIONS)} known deviations",
        f"failures: {len(report.failures())}; operations answering fields the specs do not list: {len(undocumented)}",
        *(f"  undocumented fields in {operation}" for operation in sorted(undocumented)),
    ]


def main(argv: list[str]) -> None:
    """Print the figures of the recording ``argv[0]``."""
    sys.stdout.write("\n".join(figures(validate(Path(argv[0])))) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
