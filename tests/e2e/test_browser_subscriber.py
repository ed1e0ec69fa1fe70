"""The subscriber's journey in a real headless Chromium on the embedded default, started as the README starts
it (`smsmeter serve --demo`, nothing configured: SQLite, the simulated SMS network and meters, and — with no
Stripe key — the built-in payment simulator in place of Stripe Checkout):

- the subscriber asks the portal for a one-time sign-in code; an operator (another browser, another person)
  reads it on the console's SMS outbox; the subscriber signs in with it, sees the balance and a consumption
  chart with points, tops up online through the simulator's card page, watches the credit walk to 1:1 without
  reloading, and downloads an invoice PDF;
- a declined card brings the subscriber back to the portal with the message, and nothing is charged; so does
  cancelling on the card page.
Ana Popescu reads the portal in Romanian (her profile's language). Screenshots, the last page's included, and
the downloaded PDF are written to tests/artifacts/<journey>/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    with running_service(tmp_path_factory.mktemp("service"), {}, args=("--demo",)) as running:
        yield running


def _logins(service: RunningService) -> tuple[str, str, str, str]:
    operator, password, subscriber, portal_password = (
        (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:4]
    )
    return operator, password, subscriber, portal_password


def _operator(browser: object, service: RunningService) -> object:
    operator, password, _, _ = _logins(service)
    desk = new_context(browser).new_page()  # type: ignore[attr-defined]
    desk.goto(service.base_url + "/login")
    desk.fill("#username", operator)
    desk.fill("#password", password)
    desk.click("button[type=submit]")
    desk.wait_for_url(re.compile(r"/console"))
    return desk


def _sign_in_code(desk: object, service: RunningService, code: str) -> str:
    """The newest sign-in code sent to the subscriber, as the operator reads it on the SMS outbox."""
    desk.click("nav >> text=SMS outbox")  # type: ignore[attr-defined]
    desk.wait_for_url(re.compile(r"/console/sms-outbox"))  # type: ignore[attr-defined]
    desk.fill("[data-testid=outbox-search]", code)  # type: ignore[attr-defined]
    desk.press("[data-testid=outbox-search]", "Enter")  # type: ignore[attr-defined]
    desk.wait_for_url(re.compile(rf"q={code}"))  # type: ignore[attr-defined]
    row = desk.locator(f"[data-testid=outbox-row][data-subscriber='{code}']").first  # type: ignore[attr-defined]
    text = row.locator("[data-testid=outbox-text]").inner_text()
    match = re.search(r"(\d{6})", text)
    assert match, text
    return match.group(1)


def test_a_subscriber_signs_in_with_the_sms_code_tops_up_online_and_downloads_the_invoice(
    service: RunningService,
) -> None:
    shots = Shots("subscriber-journey")
    _, _, code, _ = _logins(service)
    started = time.monotonic()
    with chromium() as browser:
        desk = _operator(browser, service)
        context = new_context(browser)
        portal = context.new_page()  # type: ignore[attr-defined]
        portal.goto(service.base_url + "/portal/login")
        portal.fill("#code2", code)
        portal.click("form[action='/portal/login/code'] button")
        portal.wait_for_selector("#otp")
        shots.take(portal, "code-asked")

        otp = _sign_in_code(desk, service, code)
        shots.take(desk, "sms-outbox")  # type: ignore[arg-type]
        portal.fill("#otp", otp)
        portal.click("form[action='/portal/login/verify'] button")
        portal.wait_for_url(re.compile(r"/portal$"))
        assert portal.get_attribute("html", "lang") == "ro"
        assert portal.inner_text("[data-testid=balance]").strip()
        bars = portal.locator("[data-testid=daily] rect")
        assert bars.count() >= 30  # 90 days of readings: a bar a day
        shots.take(portal, "portal")

        portal.click("[data-testid=topup]")
        portal.wait_for_url(re.compile(r"/topup$"))
        assert portal.input_value("#account") == code
        portal.check("input[name=amount][value='1000']")
        portal.click("[data-testid=topup-form] button[type=submit]")
        portal.wait_for_url(re.compile(r"/checkout/simulator/cs_sim_[0-9a-f]{32}$"))
        assert portal.is_visible("[data-testid=simulator-note]")
        assert portal.inner_text("[data-testid=checkout-amount]").replace("\xa0", " ") == "10,00 USD"  # in Romanian
        reference = portal.inner_text("[data-testid=checkout-reference]")
        shots.take(portal, "checkout-simulator")
        portal.click("[data-testid=checkout-pay]")

        portal.wait_for_url(re.compile(rf"/topup/{reference}$"))
        portal.wait_for_selector("#steps li[data-step=paid].list-group-item-success")
        shots.take(portal, "payment-confirmed")
        portal.wait_for_function("() => document.getElementById('state').dataset.state === '1:1'", timeout=60_000)
        steps = portal.locator("#steps li.list-group-item-success")
        assert [steps.nth(i).get_attribute("data-step") for i in range(steps.count())] == [
            "paid",
            "0:0",
            "0:1",
            "1:0",
            "1:1",
        ]
        assert portal.inner_text("[data-testid=topup-state]") == "Gata: contorul are creditul."
        shots.take(portal, "credit-applied")

        portal.goto(service.base_url + "/portal")
        portal.wait_for_selector("[data-live-status] .badge")
        assert portal.locator("[data-live-status] .badge").first.inner_text() == "1:1"
        for _ in range(60):  # last month's invoices are issued by the monthly job the service runs at start
            if portal.locator("[data-testid=invoice]").count():
                break
            time.sleep(1)
            portal.reload()
        invoice = portal.locator("[data-testid=invoice]").first
        href = invoice.get_attribute("href")
        assert href
        assert re.fullmatch(r"/portal/invoices/\d+\.pdf", href)
        pdf = context.request.get(service.base_url + href)  # type: ignore[attr-defined]
        assert pdf.status == 200
        assert pdf.headers["content-type"] == "application/pdf"
        body = pdf.body()
        assert body.startswith(b"%PDF")
        (shots.folder / f"{invoice.inner_text().strip()}.pdf").write_bytes(body)
        shots.take(portal, "last-page-portal-after-top-up")
    status, state = service.get_json(f"/api/topups/{reference}")
    assert (status, state["payment_status"], state["command_state"]) == (200, "paid", "1:1")
    print(f"subscriber journey: {time.monotonic() - started:.1f} s")


def test_a_declined_card_returns_to_the_portal_with_the_message(service: RunningService) -> None:
    """Signed in with the subscriber login `serve --demo` prints (and keeps in var/demo-login.txt)."""
    shots = Shots("subscriber-declined-card")
    operator, operator_password, code, password = _logins(service)
    log = service.log()
    assert f"Operator login: {operator} / {operator_password}" in log
    assert f"Subscriber login: {code} / {password}   at /portal/login" in log
    assert "payments: Stripe Checkout replaced by the built-in payment simulator" in log
    with chromium() as browser:
        portal = new_context(browser).new_page()  # type: ignore[attr-defined]
        portal.goto(service.base_url + "/portal/login")
        portal.fill("#code", code)
        portal.fill("#password", password)
        portal.click("form[action='/portal/login'] button")
        portal.wait_for_url(re.compile(r"/portal$"))
        portal.click("[data-testid=topup]")
        portal.fill("#amount_custom", "7.50")
        portal.click("[data-testid=topup-form] button[type=submit]")
        portal.wait_for_url(re.compile(r"/checkout/simulator/"))
        assert portal.inner_text("[data-testid=checkout-amount]").replace("\xa0", " ") == "7,50 USD"
        reference = portal.inner_text("[data-testid=checkout-reference]")
        portal.fill("[data-testid=checkout-card]", "4000 0000 0000 0002")  # Stripe's declined test card
        shots.take(portal, "declined-card")
        portal.click("[data-testid=checkout-pay]")
        portal.wait_for_url(re.compile(rf"/topup/{reference}\?cancelled=1&declined=1$"))
        assert "Cardul a fost refuzat" in portal.inner_text("[data-testid=topup-declined]")
        portal.wait_for_function("() => document.getElementById('state').dataset.state === 'failed'")
        assert "Your card was declined." in portal.inner_text("[data-testid=topup-state]")
        shots.take(portal, "last-page-declined")
    status, state = service.get_json(f"/api/topups/{reference}")
    assert (status, state["payment_status"], state["command_state"]) == (200, "failed", None)


def test_cancelling_on_the_simulator_returns_to_the_portal_with_the_message(service: RunningService) -> None:
    shots = Shots("subscriber-cancelled-checkout")
    _, _, code, _ = _logins(service)
    with chromium() as browser:
        portal = new_context(browser, locale="en-US").new_page()  # type: ignore[attr-defined]
        portal.goto(service.base_url + f"/topup?account={code}")  # paying needs no sign-in
        portal.click("[data-testid=topup-form] button[type=submit]")
        portal.wait_for_url(re.compile(r"/checkout/simulator/"))
        reference = portal.inner_text("[data-testid=checkout-reference]")
        portal.click("[data-testid=checkout-cancel]")
        portal.wait_for_url(re.compile(rf"/topup/{reference}\?cancelled=1$"))
        assert "nothing was charged" in portal.inner_text("[data-testid=topup-cancelled]")
        shots.take(portal, "last-page-cancelled")
    status, state = service.get_json(f"/api/topups/{reference}")
    assert (status, state["payment_status"]) == (200, "pending")
