"""The permission matrix: every route × every role is allowed or denied exactly as web/permissions.py's
table says; anonymous callers are sent to sign in; a subscriber sees only their own data."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient

from store.uow import UnitOfWork
from tests.integration.web.helpers import PASSWORD, Seeded, login, portal_login
from web import auth
from web.keys import CLOCK
from web.permissions import PERMISSIONS, PUBLIC, ROLES, SUBSCRIBER, permission_of


def _routes(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, path with ids filled in, action) for every route but static files and HEAD twins."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD" or isinstance(route.resource, web.StaticResource) or route.resource is None:
            continue
        action = permission_of(route.handler)
        assert action is not None, f"{route.method} {route.resource.canonical} names no action"
        assert action == PUBLIC or action in PERMISSIONS
        path = re.sub(r"\{[^}]+\}", "1", route.resource.canonical)
        out.append((route.method, path, action))
    return out


async def _call(client: TestClient, method: str, path: str, csrf: str) -> int:
    headers = {"X-CSRF-Token": csrf, "Accept": "text/html"}
    response = await client.request(method, path, headers=headers, allow_redirects=False, data={})
    await response.read()
    return response.status


async def test_every_route_names_an_action(app: web.Application) -> None:
    assert len(_routes(app)) > 20


async def test_every_route_for_every_role_is_exactly_as_the_table_says(
    app: web.Application, client: TestClient, seeded: Seeded
) -> None:
    routes = _routes(app)
    checked = 0
    for role in ROLES:
        client.session.cookie_jar.clear()
        if role == SUBSCRIBER:
            csrf = await portal_login(client, seeded.subscriber_codes[0])
        else:
            csrf = await login(client, role)
        for method, path, action in routes:
            if path == "/logout":
                continue  # it would end the session; checked below
            status = await _call(client, method, path, csrf)
            if action == PUBLIC or role in PERMISSIONS[action]:
                assert status not in (401, 403), f"{role} denied {method} {path} ({action}): {status}"
                assert status < 500, f"{role} {method} {path}: {status}"
            else:
                assert status == 403, f"{role} allowed {method} {path} ({action}): {status}"
            checked += 1
        assert await _call(client, "POST", "/logout", csrf) == 303
    assert checked >= len(ROLES) * 20


async def test_anonymous_callers_must_sign_in(app: web.Application, client: TestClient, seeded: Seeded) -> None:
    csrf_page = await client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await csrf_page.text()).group(1)  # type: ignore[union-attr]
    for method, path, action in _routes(app):
        status = await _call(client, method, path, csrf)
        if action == PUBLIC:
            assert status not in (401, 403), f"{method} {path}: {status}"
        elif path.startswith("/api/"):
            assert status == 401, f"{method} {path}: {status}"
        else:
            assert status in (303, 401), f"{method} {path}: {status}"


async def test_api_keys_carry_their_role(
    app: web.Application, client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    async with uow.begin() as conn:
        _id, viewer_key = await auth.create_api_key(conn, name="MDM", role="viewer", now=app[CLOCK]())
        revoked_id, revoked_key = await auth.create_api_key(conn, name="old CIS", role="admin", now=app[CLOCK]())
        await auth.revoke_api_key(conn, revoked_id, app[CLOCK]())
    response = await client.get("/api/v1/subscribers", headers={"Authorization": f"Bearer {viewer_key}"})
    assert response.status == 200
    response = await client.get("/api/v1/audit", headers={"X-API-Key": viewer_key})
    assert response.status == 403
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 403
    assert body["type"].endswith("/forbidden")
    response = await client.get("/api/v1/subscribers", headers={"Authorization": f"Bearer {revoked_key}"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_subscriber_sees_only_their_own_data(client: TestClient, seeded: Seeded) -> None:
    a_id, b_id = seeded.subscriber_ids
    await portal_login(client, seeded.subscriber_codes[0])
    page = await (await client.get("/portal")).text()
    assert "Ana Popescu" in page
    assert "Ivan Petrov" not in page
    assert seeded.subscriber_codes[1] not in page
    for path in (
        f"/api/v1/subscribers/{b_id}",
        f"/api/v1/subscribers/{b_id}/ledger",
        f"/console/subscribers/{b_id}",
        f"/api/v1/subscribers/{a_id}",
        "/api/v1/payments?subscriber_id=" + str(b_id),
    ):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 403, path
    # B's password does not open A's account, and B (no password set) cannot sign in with A's
    token_page = await client.get("/portal/login")
    assert token_page.status in (200, 303)


async def test_subscriber_b_cannot_sign_in_with_a_password_of_a(client: TestClient, seeded: Seeded) -> None:
    page = await client.get("/portal/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text()).group(1)  # type: ignore[union-attr]
    response = await client.post(
        "/portal/login", data={"code": seeded.subscriber_codes[1], "password": PASSWORD, "csrf_token": csrf}
    )
    assert response.status == 401
