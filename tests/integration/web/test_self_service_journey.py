"""The keyword journey in the service as the composition root builds it, on the demo (both databases): the
operator makes a voucher batch on the console, the simulated handset of a demo subscriber texts `PAY <code>`
to the short number, the answer appears in the SMS outbox and the credit goes to the subscriber's meter; a
second `PAY` of the same code is answered "used"."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from config import load_settings
from smsmeter.app import build_app
from smsmeter.demo import load_demo, logins_file
from store.schema import ledger as L  # noqa: N812
from tests.integration.web.helpers import form_token, login

ANA = ("640100100010001", "37360000001")  # the demo's Ana Popescu and her phone


async def _outbox_until(desk: TestClient, phone: str, wanted: str) -> str:
    for _ in range(100):
        html = await (await desk.get(f"/console/sms-outbox?q={phone}")).text()
        if wanted in html:
            return html
        await asyncio.sleep(0.1)
    raise AssertionError(f"{wanted!r} never reached the outbox")


async def test_a_subscriber_pays_a_voucher_by_sms_and_reads_the_answer(
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
    desk = TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True))
    await desk.start_server()
    try:
        code, phone = ANA
        assert code == "640100100010001"
        await login(desk, operator, password)
        token = await form_token(desk, "/console/vouchers")
        made = await desk.post("/console/vouchers", data={"csrf_token": token, "count": "1", "amount": "7.00"})
        assert made.status == 200, await made.text()
        [voucher] = re.findall(r'data-testid="voucher-code">([0-9 ]+)<', await made.text())

        page = await (await desk.get("/console/sms-outbox")).text()
        assert 'data-testid="handset-form"' in page
        token = await form_token(desk, "/console/sms-outbox")
        sent = await desk.post(
            "/console/sms-outbox/handset",
            data={"csrf_token": token, "phone": phone, "text": f"PAY {voucher}"},
            allow_redirects=False,
        )
        assert sent.status == 303, await sent.text()
        html = await _outbox_until(desk, phone, "7.00 USD")
        assert code in html
        async with engine.connect() as conn:
            top = (await conn.execute(select(L.topups).where(L.topups.c.idempotency_key.like("voucher:%")))).one()
        assert top.amount_minor == 700

        token = await form_token(desk, "/console/sms-outbox")
        await desk.post(
            "/console/sms-outbox/handset", data={"csrf_token": token, "phone": phone, "text": f"PAY {voucher}"}
        )
        await _outbox_until(desk, phone, "this voucher has been used already")  # PAY is English: answered in English
        async with engine.connect() as conn:
            assert len((await conn.execute(select(L.topups.c.id))).all()) >= 1
            vouchers_paid = (
                await conn.execute(select(L.topups.c.id).where(L.topups.c.idempotency_key.like("voucher:%")))
            ).all()
        assert len(vouchers_paid) == 1
    finally:
        await desk.close()
