"""The generated utility of bench/billing.py for the other benches: `generate(dsn, n, share, backlog)` and the
master key `MASTER` its meter keys are wrapped under. Loaded from its file: a module named `billing` in bench/
would stand in for the project's own package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_billing", Path(__file__).with_name("billing.py"))
assert _spec is not None
assert _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

generate = _module.generate
MASTER: bytes = _module.MASTER
