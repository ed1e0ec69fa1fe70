"""Operator login through a real FreeRADIUS: PAP with Message-Authenticator both ways, the role from the
Class attribute, the default role without one, refusals, and a server that does not answer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from config import RadiusSettings, Secret
from store.schema.auth import audit_log, operators
from store.uow import UnitOfWork
from tests.integration.web.helpers import form_token
from tests.support.radius import RadiusServer, available, free_udp_port, running_freeradius
from web.errors import RadiusError
from web.keys import Services
from web.radius import RadiusPasswordChecker, role_from_class

USERS = {"alice": ("alice-pw", "operator"), "carol": ("carol-pw", "auditor"), "bob": ("bob-pw", None)}


@pytest.fixture(scope="module")
def freeradius(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadiusServer]:
    if not available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI requires FreeRADIUS (apt-get install freeradius)")
        pytest.skip("FreeRADIUS is not installed")
    with running_freeradius(tmp_path_factory.mktemp("radius"), USERS) as server:
        yield server


def _settings(server: RadiusServer, **overrides: object) -> RadiusSettings:
    values: dict[str, object] = {
        "server": server.host,
        "port": server.port,
        "secret": Secret(server.secret),
        "timeout_s": 1.0,
        "retries": 1,
    }
    values.update(overrides)
    return RadiusSettings(**values)  # type: ignore[arg-type]


def test_role_from_class() -> None:
    assert role_from_class([b"role=operator"], "viewer") == "operator"
    assert role_from_class([b"smsmeter-role=Admin"], "viewer") == "admin"
    assert role_from_class([b"cashier"], "") == "cashier"
    assert role_from_class([b"something-else"], "viewer") == "viewer"
    assert role_from_class([], "") is None


async def test_the_checker_against_freeradius(freeradius: RadiusServer) -> None:
    checker = RadiusPasswordChecker(_settings(freeradius))
    try:
        assert await checker("alice", "alice-pw") == "operator"
        assert await checker("carol", "carol-pw") == "auditor"
        assert await checker("bob", "bob-pw") == "viewer"  # no Class: the default role
        assert await checker("alice", "wrong") is None
        assert await checker("mallory", "x") is None
    finally:
        await checker.close()
    no_default = RadiusPasswordChecker(_settings(freeradius, default_role=""))
    try:
        assert await no_default("bob", "bob-pw") is None
    finally:
        await no_default.close()


async def test_a_wrong_secret_gets_no_accepted_answer(freeradius: RadiusServer) -> None:
    checker = RadiusPasswordChecker(_settings(freeradius, secret=Secret("not-the-secret"), timeout_s=0.3, retries=0))
    try:
        with pytest.raises(RadiusError):  # FreeRADIUS drops requests whose Message-Authenticator is wrong
            await checker("alice", "alice-pw")
    finally:
        await checker.close()


async def test_a_silent_server_is_an_error_not_a_refusal() -> None:
    settings = RadiusSettings(server="127.0.0.1", port=free_udp_port(), secret=Secret("x"), timeout_s=0.2, retries=1)
    checker = RadiusPasswordChecker(settings)
    try:
        with pytest.raises(RadiusError):
            await checker("alice", "alice-pw")
    finally:
        await checker.close()


@pytest.fixture
def radius_services(services: Services, freeradius: RadiusServer) -> Services:
    services.radius = RadiusPasswordChecker(_settings(freeradius))
    return services


async def test_operator_signs_in_through_radius(
    radius_services: Services, client: TestClient, uow: UnitOfWork, tmp_path: Path
) -> None:
    token = await form_token(client, "/login")
    response = await client.post("/login", data={"username": "alice", "password": "wrong", "csrf_token": token})
    assert response.status == 401
    token = await form_token(client, "/login")
    response = await client.post(
        "/login", data={"username": "alice", "password": "alice-pw", "csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    me = await (await client.get("/api/v1/me")).json()
    assert (me["name"], me["role"]) == ("alice", "operator")
    async with uow.connect() as conn:
        row = (await conn.execute(select(operators).where(operators.c.username == "alice"))).mappings().one()
        audit = [(r.action, r.after) for r in await conn.execute(select(audit_log).order_by(audit_log.c.id))]
    assert row["password_hash"] is None  # RADIUS users keep no local password
    assert row["role"] == "operator"
    assert audit[-1] == ("login", {"via": "radius", "role": "operator"})
    assert ("login.failed", {"via": "radius"}) in audit
    assert isinstance(radius_services.radius, RadiusPasswordChecker)
    await radius_services.radius.close()
