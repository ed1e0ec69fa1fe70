"""Every /api/v1 operation is called by some test: a door without a test is not known to open."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from web import api

TESTS = Path(__file__).parents[2]
# a path parameter, as a test writes it: a literal, or an f-string's {expression}
_PARAMETER = r"(?:\{[^}\n]*\}|[^\"'/\s]+)"


def _pattern(canonical: str) -> re.Pattern[str]:
    parts = re.split(r"\{[^}]*\}", canonical)
    return re.compile(_PARAMETER.join(re.escape(p) for p in parts) + r"(?![\w/-])")


def test_every_api_operation_is_called_by_a_test() -> None:
    app = web.Application()
    api.setup_routes(app)
    here = Path(__file__).resolve()
    text = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("*.py") if p.resolve() != here)
    operations = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    untested = sorted(f"{method} {path}" for method, path in operations if not _pattern(path).search(text))
    assert untested == []


def test_the_pattern_reads_paths_as_tests_write_them() -> None:
    cancel = _pattern("/api/v1/commands/{id}/cancel")
    assert cancel.search("f\"/api/v1/commands/{made['command_id']}/cancel\"")
    assert cancel.search('"/api/v1/commands/7/cancel"')
    assert not cancel.search('"/api/v1/commands/7/cancelled"')
    assert not cancel.search('"/api/v1/commands/cancel"')
