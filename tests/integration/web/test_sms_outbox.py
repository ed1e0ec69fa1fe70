"""The simulated SMS network's outbox in the service as the composition root builds it (both databases): a
subscriber asks the portal for a sign-in code, an operator reads it on the console's SMS outbox page (and
through /api/v1/sms-outbox), and the subscriber signs in with it. Roles without `sms_outbox.read` are refused;
with a real SMSC there is no outbox."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from config import load_settings
from smsmeter.app import build_app
from smsmeter.demo import load_demo, logins_file
from tests.integration.web.helpers import form_token, login
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.keys import Services

ANA = ("640100100010001", "37360000001")  # the demo's Ana Popescu and her phone


async def test_an_operator_reads_the_sign_in_code_on_the_sms_outbox(
    migrated_db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = load_settings(
        None,
        {
            "SMSMETER_DATABASE_URL": migrated_db_url,
            "SMSMETER_DATA_DIR": str(tmp_path),
            "SMSMETER_WEB_SESSION_SECRET": "s" * 40,
            "SMSMETER_BILLING_TIME_SYNC_DAYS": "0",
        },
    )
    await load_demo(settings)
    operator, password = logins_file(settings).read_text().split()[:2]
    app = build_app(settings)
    subscriber = TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True))
    await subscriber.start_server()
    desk = TestClient(subscriber.server, cookie_jar=CookieJar(unsafe=True))
    try:
        code, phone = ANA
        token = await form_token(subscriber, "/portal/login")
        asked = await subscriber.post("/portal/login/code", data={"code": code, "csrf_token": token})
        assert "a sign-in code is on its way" in await asked.text()

        await login(desk, operator, password)
        console = await (await desk.get("/console/subscribers")).text()
        assert 'href="/console/sms-outbox"' in console  # in the nav: the transport is the simulator
        page = await desk.get(f"/console/sms-outbox?q={code}")
        assert page.status == 200
        html = await page.text()
        row = re.search(
            rf'data-testid="outbox-row" data-to="{phone}" data-subscriber="{code}">.*?'
            r'data-testid="outbox-text">Your sign-in code: (\d{6})</td>',
            html,
            re.S,
        )
        assert row, html
        assert "Ana Popescu" in html
        otp = row.group(1)

        api = await desk.get("/api/v1/sms-outbox", params={"q": phone})
        assert api.status == 200
        body = await api.json()
        newest = body["items"][0]
        assert (newest["to"], newest["text"], newest["subscriber"]["code"]) == (
            phone,
            f"Your sign-in code: {otp}",
            code,
        )
        assert body["total"] >= 1

        signed_in = await subscriber.post(
            "/portal/login/verify", data={"code": code, "otp": otp, "csrf_token": token}, allow_redirects=False
        )
        assert signed_in.status == 303, await signed_in.text()
        assert "Ana Popescu" in await (await subscriber.get("/portal")).text()
        # a subscriber may not read the outbox
        assert (await subscriber.get("/console/sms-outbox")).status in (302, 303, 403)
        assert (await subscriber.get("/api/v1/sms-outbox")).status == 403
    finally:
        await desk.close()
        await subscriber.close()


async def _healthy() -> HealthReport:
    return HealthReport("test", ComponentHealth("ok"), ComponentHealth("ok"))


async def test_without_the_simulated_network_there_is_no_outbox(engine: AsyncEngine) -> None:
    from store.uow import UnitOfWork
    from tests.integration.web.helpers import seed

    uow = UnitOfWork(engine)
    await seed(uow)
    app = create_app(health_check=_healthy, services=Services(uow=uow))
    async with TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True)) as client:
        await login(client, "admin")
        assert 'href="/console/sms-outbox"' not in await (await client.get("/console/subscribers")).text()
        assert (await client.get("/console/sms-outbox")).status == 404
        assert (await client.get("/api/v1/sms-outbox")).status == 404
