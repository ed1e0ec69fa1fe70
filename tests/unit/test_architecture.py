"""The shape of the code, checked: import contracts (pyproject's [tool.importlinter]), no environment
reads outside the composition root, nothing started at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ["meter_protocol", "billing", "payments", "gateway", "web", "config", "store", "telemetry", "smsmeter"]


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        attribute = (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "getenv", "environb", "putenv"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )
        imported = (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in {"environ", "getenv", "environb"} for alias in node.names)
        )
        if attribute or imported:
            lines.append(node.lineno)
    return lines


def test_only_the_composition_root_reads_the_environment() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in _sources(*[p for p in PACKAGES if p != "smsmeter"])
        if (lines := _reads_environment(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}


def test_importing_every_module_starts_nothing() -> None:
    """Import all our modules in a fresh interpreter: no thread, socket or event loop may appear."""
    modules = []
    for path in _sources(*PACKAGES):
        rel = path.relative_to(ROOT).with_suffix("")
        if "migrations" in rel.parts or rel.name == "__main__":
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        modules.append(".".join(parts))
    script = f"""
import gc, importlib, socket, threading, asyncio
before = threading.active_count()
for name in {modules!r}:
    importlib.import_module(name)
socks = [o for o in gc.get_objects() if isinstance(o, socket.socket)]
loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
print(threading.active_count() - before, len(socks), len(loops))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["0", "0", "0"], result.stdout
