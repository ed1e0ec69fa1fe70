"""The web application on a real database (both backends), with a fixed clock and a test client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from billing.sts_vending import SoftwareTokenGenerator
from config import Secret, WebSettings, load_settings
from gateway.keys import KeyRing
from smsmeter.billing_setup import build_billing
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
def billing_settings() -> dict[str, str]:
    """Settings as environment variables for the billing the app is given (its policies)."""
    return {}


@pytest.fixture
def services(uow: UnitOfWork, billing_settings: dict[str, str]) -> Services:
    keys = KeyRing(MASTER_KEY)
    billing = build_billing(load_settings(None, billing_settings), uow, keys)
    return Services(uow=uow, keys=keys, billing=billing, sts=SoftwareTokenGenerator(MASTER_KEY))


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
