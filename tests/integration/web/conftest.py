"""The web application on a real database (both backends), with a fixed clock and a test client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from config import Secret, WebSettings
from gateway.keys import KeyRing
from store.uow import UnitOfWork
from tests.integration.web.helpers import MASTER_KEY, FixedClock, Seeded, seed
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.keys import Services


async def _healthy() -> HealthReport:
    return HealthReport("test", ComponentHealth("ok"), ComponentHealth("bound"))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def services(uow: UnitOfWork) -> Services:
    return Services(uow=uow, keys=KeyRing(MASTER_KEY))


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(session_secret=Secret("s" * 40), login_attempts_per_min=1000)


@pytest.fixture
def app(services: Services, web_settings: WebSettings, clock: FixedClock) -> web.Application:
    return create_app(health_check=_healthy, services=services, web_settings=web_settings, clock=clock)


async def new_client(app: web.Application) -> TestClient:
    client = TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    return client


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient]:
    c = await new_client(app)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def seeded(uow: UnitOfWork) -> Seeded:
    return await seed(uow)
