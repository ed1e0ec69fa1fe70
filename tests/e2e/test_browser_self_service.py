"""The keyword journey in a real headless Chromium on `smsmeter serve --demo`: the operator makes a voucher
batch on the console's Vouchers page, the simulated handset of the demo subscriber Ana Popescu texts
`PAY <code>` to the short number (the SMS outbox page's handset), the answer appears in the SMS outbox and the
credit reaches her meter (the subscriber card's meter credit, or its last credit applied, changes); a code
the cashier withdrew on the Vouchers page is answered as withdrawn. Screenshots go to
tests/artifacts/self-service-journey/ and self-service-void-journey/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service

ANA = ("640100100010001", "37360000001")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    with running_service(tmp_path_factory.mktemp("service"), {}, args=("--demo",)) as running:
        yield running


def _meter_credit(page: object, service: RunningService, code: str) -> str:
    page.goto(service.base_url + f"/console/subscribers?q={code}")  # type: ignore[attr-defined]
    page.click("[data-testid=subscriber-link]")  # type: ignore[attr-defined]
    page.wait_for_selector("[data-testid=subscriber-name]")  # type: ignore[attr-defined]
    for testid in ("meter-credit", "last-credit"):  # as the meter reported it, else its last credit applied (1:1)
        credit = page.locator(f"[data-testid={testid}]")  # type: ignore[attr-defined]
        if credit.count():
            return f"{testid} {credit.inner_text()}"
    return ""


def test_a_subscriber_pays_a_scratch_card_voucher_by_sms(service: RunningService) -> None:
    shots = Shots("self-service-journey")
    code, phone = ANA
    operator, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.goto(service.base_url + "/login")
        page.fill("#username", operator)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/console"))
        before = _meter_credit(page, service, code)

        page.goto(service.base_url + "/console/vouchers")
        page.fill("#v-count", "1")
        page.fill("#v-amount", "7.00")
        page.click("[data-testid=voucher-generate]")
        page.wait_for_selector("[data-testid=voucher-code]")
        voucher = page.inner_text("[data-testid=voucher-code]").strip()
        shots.take(page, "batch-made")

        page.goto(service.base_url + "/console/sms-outbox")
        page.fill("[data-testid=handset-phone]", phone)
        page.fill("[data-testid=handset-text]", f"PAY {voucher}")
        page.click("[data-testid=handset-send]")
        page.wait_for_url(re.compile(r"ok=handset_sent"))
        deadline = time.monotonic() + 20
        while "voucher accepted" not in page.inner_text("[data-testid=sms-outbox]"):
            assert time.monotonic() < deadline, page.inner_text("[data-testid=sms-outbox]")
            page.wait_for_timeout(300)
            page.reload()
        answer = page.locator("[data-testid=outbox-row]", has_text="voucher accepted").first
        assert "7.00 USD" in answer.inner_text()
        assert code in answer.inner_text()
        shots.take(page, "answer-in-outbox")

        deadline = time.monotonic() + 20
        while (after := _meter_credit(page, service, code)) == before:
            assert time.monotonic() < deadline, (before, after)
            page.wait_for_timeout(300)
        shots.take(page, "credit-on-the-meter")
        assert after != before
        assert after.startswith("meter-credit") or after == "last-credit $7.00"


def test_a_withdrawn_voucher_is_refused_with_its_reason(service: RunningService) -> None:
    shots = Shots("self-service-void-journey")
    _code, phone = ANA
    operator, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.goto(service.base_url + "/login")
        page.fill("#username", operator)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/console"))

        page.goto(service.base_url + "/console/vouchers")
        page.fill("#v-count", "2")
        page.fill("#v-amount", "3.00")
        page.click("[data-testid=voucher-generate]")
        page.wait_for_selector("[data-testid=voucher-code]")
        voucher = page.locator("[data-testid=voucher-code]").first.inner_text().strip()

        page.goto(service.base_url + "/console/vouchers")
        page.fill("#v-void-code", voucher)
        page.fill("#v-void-reason", "misprinted")
        page.click("[data-testid=voucher-void]")
        page.wait_for_selector("[data-testid=vouchers-voided]")
        assert "1 vouchers withdrawn" in page.inner_text("[data-testid=vouchers-voided]")
        shots.take(page, "code-withdrawn")

        page.goto(service.base_url + "/console/sms-outbox")
        page.fill("[data-testid=handset-phone]", phone)
        page.fill("[data-testid=handset-text]", f"PAY {voucher}")
        page.click("[data-testid=handset-send]")
        page.wait_for_url(re.compile(r"ok=handset_sent"))
        deadline = time.monotonic() + 20
        while "withdrawn by the utility" not in page.inner_text("[data-testid=sms-outbox]"):
            assert time.monotonic() < deadline, page.inner_text("[data-testid=sms-outbox]")
            page.wait_for_timeout(300)
            page.reload()
        shots.take(page, "refused-in-outbox")
