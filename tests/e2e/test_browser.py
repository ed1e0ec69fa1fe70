"""End-to-end in a real headless Chromium against the service started as a process (SQLite, the
simulated SMS network and meter fleet, the demo utility):

- an operator signs in, finds a subscriber, sends relay off with a reason and a confirmation, and
  watches the command's state reach 1:1 (processed by the simulated meter) without reloading;
- a cashier takes cash, and the subscriber follows the credit to 1:1 in the portal;
- a subscriber tops up online: the portal → Checkout (the stub's hosted page, which posts the signed
  `checkout.session.completed` webhook to the service) → the return page, which shows the payment
  confirmed and then the credit command walking to 1:1 on the simulated meter;
- the console in Romanian and Russian.
Screenshots are kept in tests/artifacts/."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from config import load_settings
from store.engine import create_engine
from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service
from tests.support.stripe_checkout_stub import RunningStub, running_checkout_stub
from tests.support.stripe_events import WEBHOOK_SECRET
from web.auth import set_portal_password

SUBSCRIBER_PASSWORD = "portal password 1"


@pytest.fixture(scope="module")
def checkout() -> Iterator[RunningStub]:
    with running_checkout_stub() as stub:
        yield stub


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, checkout: RunningStub) -> Iterator[RunningService]:
    require_chromium()
    folder = tmp_path_factory.mktemp("service")
    env = {
        "SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.3",
        "SMSMETER_SIMULATOR_ACK_DELAY_S": "0.5",
        "SMSMETER_STRIPE_API_KEY": "sk_test_smsmeter",
        "SMSMETER_STRIPE_API_BASE": checkout.base_url,
        "SMSMETER_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SMSMETER_PAYMENTS_RECONCILE_ENABLED": "false",
    }
    with running_service(folder, env, args=("--demo",)) as running:
        checkout.stub.webhook_url = running.base_url + "/webhooks/stripe"
        yield running


def _operator_login(service: RunningService) -> tuple[str, str]:
    folder = service.log_path.parent
    username, password = (folder / "var" / "demo-login.txt").read_text().split()[:2]
    return username, password


def _give_portal_password(service: RunningService, code: str) -> None:
    folder = service.log_path.parent
    url = load_settings(
        None, {"SMSMETER_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'var' / 'smsmeter.db'}"}
    ).database.url

    async def set_it() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                from sqlalchemy import select

                from store.schema.registry import subscribers

                sid = await conn.scalar(select(subscribers.c.id).where(subscribers.c.code == code))
                await set_portal_password(conn, sid, SUBSCRIBER_PASSWORD)
        finally:
            await engine.dispose()

    asyncio.run(set_it())


def _portal_sign_in(page: object, base: str, code: str) -> None:
    page.goto(base + "/portal/login")  # type: ignore[attr-defined]
    page.fill("#code", code)  # type: ignore[attr-defined]
    page.fill("#password", SUBSCRIBER_PASSWORD)  # type: ignore[attr-defined]
    page.click("form[action='/portal/login'] button")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/portal$"))  # type: ignore[attr-defined]


def _sign_in(page: object, base: str, username: str, password: str) -> None:
    page.goto(base + "/login")  # type: ignore[attr-defined]
    page.fill("#username", username)  # type: ignore[attr-defined]
    page.fill("#password", password)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]


def test_operator_finds_a_subscriber_and_disconnects_the_meter(service: RunningService) -> None:
    shots = Shots("operator-relay-off")
    username, password = _operator_login(service)
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.goto(service.base_url + "/login")
        shots.take(page, "login")
        _sign_in(page, service.base_url, username, "wrong password")
        assert "Wrong user name or password." in page.inner_text("[data-testid=login-error]")
        _sign_in(page, service.base_url, username, password)
        page.wait_for_url(re.compile(r"/console/subscribers"))
        page.fill("[data-testid=search]", "Popescu")
        page.press("[data-testid=search]", "Enter")
        page.wait_for_url(re.compile(r"q=Popescu"))
        links = page.locator("[data-testid=subscriber-link]")
        assert links.count() == 1
        shots.take(page, "search")
        links.first.click()
        page.wait_for_selector("[data-testid=subscriber-name]")
        assert page.inner_text("[data-testid=subscriber-name]") == "Ana Popescu"
        shots.take(page, "card")

        dialogs: list[str] = []

        def confirm(dialog: object) -> None:
            dialogs.append(dialog.message)  # type: ignore[attr-defined]
            dialog.accept()  # type: ignore[attr-defined]

        page.on("dialog", confirm)
        page.fill("[data-testid=relay-reason]", "unpaid since March")
        page.click("[data-testid=relay-off]")
        page.wait_for_url(re.compile(r"ok=relay_off"))
        assert dialogs
        assert "relay command" in dialogs[0]
        assert "Relay off queued" in page.inner_text("[data-testid=flash]")
        badge = page.locator("[data-testid=commands] [data-command-id]").first
        shots.take(page, "relay-off-sent")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=commands] [data-command-id]').textContent === '1:1'",
            timeout=45_000,
        )
        assert badge.inner_text() == "1:1"
        assert "text-bg-success" in (badge.get_attribute("class") or "")
        shots.take(page, "relay-off-processed")

        page.goto(service.base_url + "/console/audit?action=meter.relay_off")
        assert "unpaid since March" in page.content()
        shots.take(page, "audit")
        page.goto(service.base_url + "/console/reports/communication?days=7")
        page.wait_for_selector("[data-testid=report-chart]")
        shots.take(page, "report")
        # losses by transformer over time: a line per transformer, once the consumption job has taken the
        # demo's readings in (it runs at the start)
        for _ in range(60):
            page.goto(service.base_url + "/console/reports/losses?days=30")
            if page.locator("[data-testid=losses-over-time] polyline").count() == 2:
                break
            page.wait_for_timeout(1_000)
        lines = page.locator("[data-testid=losses-over-time] polyline")
        assert sorted(lines.nth(i).get_attribute("data-series") or "" for i in range(lines.count())) == [
            "TP-101",
            "TP-205",
        ]
        shots.take(page, "losses-over-time")


def test_cash_top_up_reaches_the_meter_and_the_subscriber_sees_it(service: RunningService) -> None:
    shots = Shots("subscriber-top-up")
    code = "640100100020001"  # John Smith
    _give_portal_password(service, code)
    username, password = _operator_login(service)
    with chromium() as browser:
        desk = new_context(browser).new_page()  # type: ignore[attr-defined]
        desk.on("dialog", lambda dialog: dialog.accept())
        _sign_in(desk, service.base_url, username, password)
        desk.wait_for_url(re.compile(r"/console"))
        desk.goto(service.base_url + f"/console/subscribers?q={code}")
        desk.click("[data-testid=subscriber-link]")
        desk.fill("input[name=amount]", "25.00")
        desk.click("form[action$='/topup'] button")
        desk.wait_for_url(re.compile(r"ok=topup"))
        shots.take(desk, "cashier")

        portal = new_context(browser).new_page()  # type: ignore[attr-defined]
        _portal_sign_in(portal, service.base_url, code)
        assert "$25.00" in portal.inner_text("[data-live-status] >> xpath=..")
        status = portal.locator("[data-live-status] .badge").first
        shots.take(portal, "portal")
        portal.wait_for_function(
            "() => document.querySelector('[data-live-status] .badge').textContent === '1:1'", timeout=45_000
        )
        assert status.inner_text() == "1:1"
        assert "Credit applied by your meter" in portal.inner_text("[data-live-status]")
        portal.reload()
        assert portal.inner_text("[data-testid=last-credit]") == "$25.00"
        shots.take(portal, "portal-credit-applied")


def test_online_top_up_through_checkout_reaches_the_meter(service: RunningService, checkout: RunningStub) -> None:
    """Elena Ceban reads the portal in Romanian (her profile's language); the Checkout page is Stripe's."""
    shots = Shots("subscriber-online-top-up")
    code = "640100100020002"  # Elena Ceban, one meter
    _give_portal_password(service, code)
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        _portal_sign_in(page, service.base_url, code)
        assert page.get_attribute("html", "lang") == "ro"
        page.click("[data-testid=topup]")
        page.wait_for_url(re.compile(r"/topup$"))
        assert page.input_value("#account") == code  # the signed-in subscriber's own account
        page.check("input[name=amount][value='1000']")
        shots.take(page, "amount")
        page.click("[data-testid=topup-form] button[type=submit]")

        page.wait_for_url(checkout.base_url + "/c/pay/**")  # Stripe's hosted page (the stub)
        assert page.inner_text("[data-testid=checkout-amount]") == "10.00 USD"
        reference = page.inner_text("[data-testid=checkout-reference]")
        assert re.fullmatch(r"tp_[0-9a-f]{32}", reference)
        shots.take(page, "checkout")
        page.click("[data-testid=checkout-pay]")

        page.wait_for_url(re.compile(rf"/topup/{reference}$"))
        page.wait_for_selector("#steps li[data-step=paid].list-group-item-success")
        assert "Plata confirmată" in page.inner_text("#steps li[data-step=paid]")  # Payment confirmed
        shots.take(page, "payment-confirmed")
        page.wait_for_function("() => document.getElementById('state').dataset.state === '1:1'", timeout=45_000)
        steps = page.locator("#steps li.list-group-item-success")
        assert [steps.nth(i).get_attribute("data-step") for i in range(steps.count())] == [
            "paid",
            "0:0",
            "0:1",
            "1:0",
            "1:1",
        ]
        assert page.inner_text("[data-testid=topup-state]") == "Gata: contorul are creditul."
        shots.take(page, "credit-applied")

    [delivery] = checkout.stub.deliveries
    assert (delivery.event_type, delivery.status) == ("checkout.session.completed", 200)
    [session] = [s for s in checkout.stub.sessions.values() if s["client_reference_id"] == reference]
    assert (session["amount_total"], session["currency"], session["payment_status"]) == (1000, "usd", "paid")
    assert session["metadata"]["subscriber"] == code
    status, state = service.get_json(f"/api/topups/{reference}")
    assert status == 200
    assert (state["payment_status"], state["amount_minor"], state["command_state"]) == ("paid", 1000, "1:1")
    assert [step["state"] for step in state["command_steps"]] == ["0:0", "0:1", "1:0", "1:1"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("language", "words"), [("ro", ("Abonați", "Caută")), ("ru", ("Абоненты", "Найти"))])
def test_the_console_speaks_the_browsers_language(
    service: RunningService, language: str, words: tuple[str, ...]
) -> None:
    shots = Shots(f"console-{language}")
    username, password = _operator_login(service)
    with chromium() as browser:
        page = new_context(browser, locale=language).new_page()  # type: ignore[attr-defined]
        page.goto(service.base_url + "/login")
        assert page.get_attribute("html", "lang") == language
        _sign_in(page, service.base_url, username, password)
        page.wait_for_url(re.compile(r"/console/subscribers"))
        text = page.inner_text("body")
        for word in words:
            assert word in text
        page.click("[data-testid=subscriber-link] >> nth=0")
        page.wait_for_selector("[data-testid=subscriber-name]")
        shots.take(page, "card")
