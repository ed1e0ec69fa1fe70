"""An integrator generates a client from the OpenAPI document with a standard generator
(`openapi-python-client`, from PyPI) and calls the running service with it: a list and a create. Also: every
operation's `x-roles` names exactly the roles the permission table lets call its route in the application
as it runs."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded
from web import auth
from web.api.openapi import document
from web.keys import CLOCK
from web.permissions import PERMISSIONS, PUBLIC, permission_of

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
METHODS = ("get", "post", "put", "patch", "delete")


def _generate(tmp_path: Path) -> Any:
    """The client package generated from the document into tmp_path, imported."""
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document()))
    if not GENERATOR.exists():
        pytest.fail(f"{GENERATOR.name} is a test requirement (pyproject's test extras)")
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none", "--output-path", "smsmeter_client"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "smsmeter_client" / "api" / "subscribers" / "create_subscriber.py").exists(), done.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module("smsmeter_client")
    finally:
        sys.path.remove(str(tmp_path))


async def test_a_client_generated_from_the_document_lists_and_creates(
    client: TestClient, seeded: Seeded, uow: UnitOfWork, tmp_path: Path
) -> None:
    package = _generate(tmp_path)
    try:
        from smsmeter_client.api.subscribers import create_subscriber, list_subscribers  # type: ignore[import-not-found]
        from smsmeter_client.models import NewSubscriber  # type: ignore[import-not-found]

        async with uow.begin() as conn:
            _id, key = await auth.create_api_key(conn, name="CIS", role="operator", now=client.app[CLOCK]())
        api = package.AuthenticatedClient(base_url=str(client.make_url("")).rstrip("/"), token=key)
        async with api:
            listing = await list_subscribers.asyncio_detailed(client=api, q="640100100010001", limit=5)
            assert listing.status_code == 200, listing.content
            assert [s.code for s in listing.parsed.items] == ["640100100010001"]
            assert listing.parsed.total == 1

            created = await create_subscriber.asyncio_detailed(
                client=api, body=NewSubscriber(code="640100100010077", name="Generated Client")
            )
            assert created.status_code == 201, created.content
            assert (created.parsed.code, created.parsed.name) == ("640100100010077", "Generated Client")
            again = await create_subscriber.asyncio_detailed(
                client=api, body=NewSubscriber(code="640100100010077", name="Generated Client")
            )
            assert again.status_code == 409
            assert again.parsed.status == 409
            found = await list_subscribers.asyncio(client=api, q="Generated Client")
            assert [s.code for s in found.items] == ["640100100010077"]
    finally:
        for name in [m for m in sys.modules if m == "smsmeter_client" or m.startswith("smsmeter_client.")]:
            del sys.modules[name]


def test_every_operation_names_the_roles_the_permission_table_allows(app: web.Application) -> None:
    """Read from the application itself (every route, its `@requires` action, the table), not from the
    document's own bookkeeping; the document must say the same, for every operation it lists."""
    allowed: dict[tuple[str, str], list[str]] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not path.startswith("/api/v1/") or route.method.lower() not in METHODS:
            continue
        action = permission_of(route.handler)
        assert action is not None, f"{route.method} {path} names no action"
        allowed[(route.method.lower(), path)] = [] if action == PUBLIC else sorted(PERMISSIONS[action])
    described = {
        (method, path): operation.get("x-roles")
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }
    assert set(described) == set(allowed)
    wrong = {op: (roles, allowed[op]) for op, roles in described.items() if sorted(roles or []) != allowed[op]}
    assert wrong == {}
    assert described[("post", "/api/v1/subscribers")] == ["admin", "operator"]
    assert described[("post", "/api/v1/meters")] == ["admin", "operator"]
