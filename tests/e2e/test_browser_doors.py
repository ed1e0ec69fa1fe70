"""In Chromium on the demo (`serve --demo`, the simulated network and meters): an admin adds a price version
to the demo tariff, pushes it to every meter on it, watches the job page count the meters at 1:1, and finds
the version on a meter's card; then replaces that meter from its card. Screenshots in tests/artifacts/."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service
from tests.support.stripe_events import WEBHOOK_SECRET, checkout_session, event, signed


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    env = {
        "SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.2",
        "SMSMETER_SIMULATOR_ACK_DELAY_S": "0.3",
        "SMSMETER_STRIPE_API_KEY": "sk_test_smsmeter",
        "SMSMETER_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SMSMETER_PAYMENTS_RECONCILE_ENABLED": "false",
    }
    with running_service(tmp_path_factory.mktemp("service"), env, args=("--demo",)) as running:
        yield running


def _sign_in(page: object, service: RunningService) -> None:
    username, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    page.goto(service.base_url + "/login")  # type: ignore[attr-defined]
    page.fill("#username", username)  # type: ignore[attr-defined]
    page.fill("#password", password)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/console"))  # type: ignore[attr-defined]


def test_a_tariff_version_reaches_the_meters_and_a_meter_is_replaced(service: RunningService) -> None:
    shots = Shots("tariff-push-and-meter-replace")
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: dialog.accept())
        _sign_in(page, service)
        page.goto(service.base_url + "/console/tariffs")
        page.click("[data-testid=tariff-link]:has-text('FLAT')")
        page.fill("#steps", "2.40")
        page.click("[data-testid=add-version]")
        page.wait_for_url(re.compile(r"ok=tariff_version"))
        shots.take(page, "version-added")
        page.click("[data-testid=push]")
        page.wait_for_url(re.compile(r"/console/jobs/\d+"))
        shots.take(page, "job")
        page.wait_for_function(
            "() => { const n = document.querySelector('[data-testid=job-processed]');"
            " return n && Number(n.dataset.total) > 0 && Number(n.textContent) === Number(n.dataset.total); }",
            timeout=60_000,
        )
        shots.take(page, "job-at-1-1")

        page.goto(service.base_url + "/console/subscribers?q=Popescu")
        page.click("[data-testid=subscriber-link]")
        page.click("[data-testid=meter-link]")
        assert page.locator("[data-testid=tariff-running]").count() == 1
        shots.take(page, "meter-card")

        page.click("[data-testid=replace]")
        page.fill("#code", "88000000000000000997")
        page.fill("#msisdn", "37369009991")
        page.click("[data-testid=meter-submit]")
        page.wait_for_url(re.compile(r"ok=meter_replaced"))
        assert page.inner_text("[data-testid=meter-code]") == "88000000000000000997"
        assert page.inner_text("[data-testid=replaces]")
        shots.take(page, "replaced")


def test_an_operator_credits_a_payment_whose_reference_was_unknown(service: RunningService) -> None:
    shots = Shots("payment-conflict-resolved")
    now = int(time.time())
    body = event(
        "checkout.session.completed",
        checkout_session("cs_unknown_1", "tp_" + "0" * 32, 1500, subscriber="640100100010001"),
        created=now,
    )
    raw, header = signed(body, now)
    request = urllib.request.Request(
        service.base_url + "/webhooks/stripe",
        data=raw,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: dialog.accept())
        _sign_in(page, service)
        page.goto(service.base_url + "/console/payment-conflicts")
        assert "unknown payment reference" in page.inner_text("[data-testid=conflicts]")
        shots.take(page, "open")
        page.fill("[data-testid=conflict-note]", "paid for Ana Popescu, reference lost")
        page.click("[data-testid=conflict-credit]")
        page.wait_for_url(re.compile(r"ok=conflict_credit"))
        page.goto(service.base_url + "/console/payment-conflicts?open=false")
        assert page.locator("[data-testid=resolved]").count() >= 1
        shots.take(page, "resolved")
        page.goto(service.base_url + "/console/audit?action=payment_conflict.resolve")
        assert "reference lost" in page.content()
