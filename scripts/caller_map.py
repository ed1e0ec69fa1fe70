"""The caller map: every public function of billing's and the gateway's modules, and whether anything outside
tests/ refers to it. A function whose only callers are tests is not a feature: it has no door.

    python scripts/caller_map.py           # the functions without a caller outside tests/, one a line
    python scripts/caller_map.py --all     # every public function with the modules that refer to it

Names are matched as identifiers (a call, an attribute, a reference handed on as a callback) in every Python
module of the project outside tests/ and .venv/; a name defined in more than one place counts for each.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("billing", "gateway")
SKIPPED = {"tests", ".venv", "node_modules", ".git", "bench"}


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if not SKIPPED.intersection(p.relative_to(ROOT).parts[:-1] or ("",)))


def public_functions() -> dict[str, list[str]]:
    """name → the modules (dotted) of billing/ and gateway/ that define it as a top-level public function."""
    found: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                    found[node.name].append(module)
    return found


def references() -> dict[str, set[str]]:
    """identifier → the modules outside tests/ that use it (not counting a function's own `def`)."""
    used: dict[str, set[str]] = defaultdict(set)
    for path in _modules():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Name):
                used[node.id].add(module)
            elif isinstance(node, ast.Attribute):
                used[node.attr].add(module)
            elif isinstance(node, ast.alias):
                used[node.name.rsplit(".", 1)[-1]].add(module)
    return used


def doorless() -> list[str]:
    """`module.function` for each public function of billing/ and gateway/ nothing outside tests/ refers to."""
    used = references()
    return sorted(
        f"{module}.{name}" for name, modules in public_functions().items() if not used.get(name) for module in modules
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every public function and who refers to it")
    args = parser.parse_args(argv)
    if args.all:
        used = references()
        for name, modules in sorted(public_functions().items()):
            for module in modules:
                print(f"{module}.{name}: {', '.join(sorted(used.get(name, ()))) or '-'}")
        return 0
    missing = doorless()
    for name in missing:
        print(name)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
