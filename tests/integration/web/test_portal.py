"""The subscriber portal: sign-in by password or by a one-time SMS code, balance, consumption, top-ups
with live status, invoices as PDF — only ever the signed-in subscriber's own."""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select

from billing import topup
from config import Secret, WebSettings
from gateway.keys import KeyRing
from store.audit import Actor
from store.schema import commands as cmd
from store.schema.auth import portal_logins
from store.schema.ledger import invoices
from store.uow import UnitOfWork
from tests.integration.web.conftest import _healthy, new_client
from tests.integration.web.helpers import MASTER_KEY, PASSWORD, START, FixedClock, Seeded, form_token, portal_login
from web.app import create_app
from web.keys import Services


class FakeSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def __call__(self, phone: str, text: str) -> None:
        self.sent.append((phone, text))


async def test_sign_in_with_a_one_time_code(
    client: TestClient, seeded: Seeded, services: Services, clock: FixedClock
) -> None:
    sms = FakeSms()
    services.otp_sender = sms
    code_b = seeded.subscriber_codes[1]
    for unknown in ("000000000000000", code_b):
        token = await form_token(client, "/portal/login")
        response = await client.post("/portal/login/code", data={"code": unknown, "csrf_token": token})
        assert response.status == 200
        assert "a sign-in code is on its way" in await response.text()  # the same answer, known or not
    assert len(sms.sent) == 1
    phone, text = sms.sent[0]
    assert phone == "37360000002"
    otp = text.rsplit(" ", 1)[1]
    token = await form_token(client, "/portal/login")
    wrong = "000000" if otp != "000000" else "111111"
    response = await client.post("/portal/login/verify", data={"code": code_b, "otp": wrong, "csrf_token": token})
    assert response.status == 401
    response = await client.post(
        "/portal/login/verify", data={"code": code_b, "otp": otp, "csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    page = await (await client.get("/portal")).text()
    assert "Ivan Petrov" in page
    assert "$20.00" in page
    client.session.cookie_jar.clear()
    token = await form_token(client, "/portal/login")
    response = await client.post("/portal/login/verify", data={"code": code_b, "otp": otp, "csrf_token": token})
    assert response.status == 401  # used once


async def test_codes_expire(client: TestClient, seeded: Seeded, services: Services, clock: FixedClock) -> None:
    sms = FakeSms()
    services.otp_sender = sms
    token = await form_token(client, "/portal/login")
    await client.post("/portal/login/code", data={"code": seeded.subscriber_codes[0], "csrf_token": token})
    otp = sms.sent[0][1].rsplit(" ", 1)[1]
    clock.advance(minutes=6)
    response = await client.post(
        "/portal/login/verify", data={"code": seeded.subscriber_codes[0], "otp": otp, "csrf_token": token}
    )
    assert response.status == 401


async def test_top_ups_invoices_and_consumption_are_the_subscribers_own(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    keys = KeyRing(MASTER_KEY)
    a_code, b_code = seeded.subscriber_codes
    a_topup = await topup.cash_top_up(
        uow, Actor("operator", "cashier"), a_code, 500, "USD", START, keys=keys, request_id="a" * 20
    )
    b_topup = await topup.cash_top_up(
        uow, Actor("operator", "cashier"), b_code, 700, "USD", START, keys=keys, request_id="b" * 20
    )
    async with uow.begin() as conn:
        ids = []
        for sid, aid, number in (
            (seeded.subscriber_ids[0], seeded.account_ids[0], "INV-1"),
            (seeded.subscriber_ids[1], seeded.account_ids[1], "INV-2"),
        ):
            ids.append(
                await conn.scalar(
                    insert(invoices)
                    .values(
                        number=number,
                        subscriber_id=sid,
                        account_id=aid,
                        period_start=date(2025, 12, 1),
                        period_end=date(2025, 12, 31),
                        issued_at=START,
                        content={},
                        pdf=b"%PDF-1.4 " + number.encode(),
                    )
                    .returning(invoices.c.id)
                )
            )
        for day in range(5):
            await conn.execute(
                insert(cmd.readings).values(
                    meter_id=seeded.meter_ids[0],
                    read_at=START - timedelta(days=5 - day),
                    register="import_wh",
                    value=100_000 + day * 4_500,
                    received_at=START,
                )
            )
    await portal_login(client, a_code)
    page = await (await client.get("/portal")).text()
    assert "INV-1" in page
    assert "INV-2" not in page
    assert f"/portal/topups/{a_topup.topup_id}.json" in page
    assert f"/portal/topups/{b_topup.topup_id}.json" not in page
    status = await (await client.get(f"/portal/topups/{a_topup.topup_id}.json")).json()
    assert (status["state"], status["final"]) == ("0:0", False)
    assert status["label"] == "Sending to your meter"
    assert (await client.get(f"/portal/topups/{b_topup.topup_id}.json")).status == 404
    pdf = await client.get(f"/portal/invoices/{ids[0]}.pdf")
    assert (pdf.status, await pdf.read()) == (200, b"%PDF-1.4 INV-1")
    assert (await client.get(f"/portal/invoices/{ids[1]}.pdf")).status == 404
    consumption = await (await client.get("/portal/consumption.json?period=daily")).json()
    assert [p["energy_wh"] for p in consumption["points"]] == [4500, 4500, 4500, 4500]
    assert 'data-testid="daily"' in page


async def _sign_in_state(uow: UnitOfWork) -> list[tuple[object, ...]]:
    async with uow.connect() as conn:
        rows = await conn.execute(select(portal_logins).order_by(portal_logins.c.subscriber_id))
        return [tuple(r) for r in rows]


async def test_too_many_sign_in_attempts_from_one_address_are_refused(
    seeded: Seeded, services: Services, clock: FixedClock, uow: UnitOfWork
) -> None:
    """Three attempts a minute from one address, whatever the form (password, asking for a code, entering
    one): the fourth gets the sign-in page with 429 and Retry-After — even with the right password — and
    nothing reaches the accounts (no code sent, no failure counted)."""
    sms = FakeSms()
    services.otp_sender = sms
    settings = WebSettings(session_secret=Secret("s" * 40), login_attempts_per_min=3)
    app = create_app(health_check=_healthy, services=services, web_settings=settings, clock=clock)
    client = await new_client(app)
    try:
        a_code, b_code = seeded.subscriber_codes
        token = await form_token(client, "/portal/login")
        response = await client.post("/portal/login", data={"code": a_code, "password": "nope", "csrf_token": token})
        assert response.status == 401
        response = await client.post("/portal/login/code", data={"code": b_code, "csrf_token": token})
        assert response.status == 200
        response = await client.post(
            "/portal/login/verify", data={"code": b_code, "otp": "000000", "csrf_token": token}
        )
        assert response.status == 401
        before = await _sign_in_state(uow)
        for path, data in (
            ("/portal/login", {"code": a_code, "password": PASSWORD}),
            ("/portal/login/code", {"code": b_code}),
            ("/portal/login/verify", {"code": b_code, "otp": sms.sent[0][1].rsplit(" ", 1)[1]}),
        ):
            response = await client.post(path, data={**data, "csrf_token": token}, allow_redirects=False)
            assert response.status == 429, path
            assert 0 < int(response.headers["Retry-After"]) <= 60
            page = await response.text()
            assert "Too many attempts. Try again in a minute." in page
            assert f'value="{data["code"]}"' in page  # the code stays in the form
        assert len(sms.sent) == 1  # the refused request sent no second code
        assert await _sign_in_state(uow) == before  # the throttled attempts never reached the accounts
        assert (await client.get("/portal", allow_redirects=False)).status == 303  # not signed in
    finally:
        await client.close()
