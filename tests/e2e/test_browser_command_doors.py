"""In Chromium on the demo: an admin changes a meter's key over the air and sees the meter answer under the new
key (the key change at 1:1, then a ping at 1:1 sealed under it); on a service without a gateway (so commands
wait in 0:0), a cashier's credit is cancelled from its command page and re-issued with the same transfer id.
Screenshots in tests/artifacts/."""

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
    env = {
        "SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.2",
        "SMSMETER_SIMULATOR_ACK_DELAY_S": "0.3",
        "SMSMETER_PAYMENTS_RECONCILE_ENABLED": "false",
        "SMSMETER_BILLING_TIME_SYNC_DAYS": "0",
    }
    with running_service(tmp_path_factory.mktemp("service"), env, args=("--demo",)) as running:
        yield running


@pytest.fixture(scope="module")
def web_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The demo served by a web process alone: no gateway sends, so a command stays in 0:0."""
    require_chromium()
    env = {"SMSMETER_PAYMENTS_RECONCILE_ENABLED": "false", "SMSMETER_BILLING_TIME_SYNC_DAYS": "0"}
    with running_service(tmp_path_factory.mktemp("web"), env, args=("--demo", "--role", "web")) as running:
        yield running


def _sign_in(page: object, service: RunningService) -> None:
    username, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    page.goto(service.base_url + "/login")  # type: ignore[attr-defined]
    page.fill("#username", username)  # type: ignore[attr-defined]
    page.fill("#password", password)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/console"))  # type: ignore[attr-defined]


def _command_in_url(page: object) -> int:
    match = re.search(r"command=(\d+)", page.url)  # type: ignore[attr-defined]
    assert match, page.url  # type: ignore[attr-defined]
    return int(match.group(1))


def _wait_for_state(page: object, service: RunningService, command_id: int, state: str, timeout_s: float = 60) -> None:
    """The command's page, reloaded until its history shows `state`."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.goto(f"{service.base_url}/console/commands/{command_id}")  # type: ignore[attr-defined]
        if page.locator(f"[data-state='{state}']").count():  # type: ignore[attr-defined]
            return
        assert time.monotonic() < deadline, f"command {command_id} did not reach {state}"
        time.sleep(0.5)


def _meter_card_of_popescu(page: object, service: RunningService) -> str:
    page.goto(service.base_url + "/console/subscribers?q=Popescu")  # type: ignore[attr-defined]
    page.click("[data-testid=subscriber-link]")  # type: ignore[attr-defined]
    page.click("[data-testid=meter-link]")  # type: ignore[attr-defined]
    return str(page.url)  # type: ignore[attr-defined]


def test_a_key_change_reaches_1_1_and_the_meter_answers_under_the_new_key(service: RunningService) -> None:
    shots = Shots("key-change")
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: dialog.accept())
        _sign_in(page, service)
        card = _meter_card_of_popescu(page, service)
        old_key = int(page.inner_text("[data-testid=key-in-force]"))
        page.click("[data-testid=key-change]")
        page.wait_for_url(re.compile(r"ok=key_change"))
        change = _command_in_url(page)
        shots.take(page, "pending")
        _wait_for_state(page, service, change, "1:1")
        shots.take(page, "key-change-at-1-1")

        page.goto(card)
        assert int(page.inner_text("[data-testid=key-in-force]")) == old_key + 1
        assert page.locator("[data-testid=key-pending]").count() == 0
        page.click("[data-testid=ping]")
        page.wait_for_url(re.compile(r"ok=ping"))
        ping = _command_in_url(page)
        _wait_for_state(page, service, ping, "1:1")  # sealed under the new key, answered under it
        shots.take(page, "ping-under-the-new-key")


def test_a_credit_is_cancelled_and_reissued_with_the_same_transfer_id(web_only: RunningService) -> None:
    shots = Shots("cancel-and-reissue")
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: dialog.accept())
        _sign_in(page, web_only)
        page.goto(web_only.base_url + "/console/subscribers?q=Popescu")
        page.click("[data-testid=subscriber-link]")
        page.fill("input[name=amount]", "5.00")
        page.click("form[action$='/topup'] button[type=submit]")
        page.wait_for_url(re.compile(r"ok=topup"))
        credit = _command_in_url(page)

        page.goto(f"{web_only.base_url}/console/commands/{credit}")
        transfer = page.inner_text("[data-testid=command-topup]")
        page.fill("[data-testid=cancel-reason]", "customer asked to stop it")
        page.click("[data-testid=cancel-command]")
        page.wait_for_url(re.compile(r"ok=cancelled"))
        assert page.locator("[data-state='cancelled']").count() >= 1
        assert page.inner_text("[data-testid=topup-state]").strip().lower() == "failed"
        shots.take(page, "cancelled")

        page.click("[data-testid=reissue-credit]")
        page.wait_for_url(re.compile(r"ok=reissued"))
        again = _command_in_url(page)
        assert again != credit
        reissued = page.inner_text("[data-testid=command-topup]")
        assert re.search(r"transfer id (\d+)", transfer, re.I) is not None
        assert re.findall(r"\d+", transfer.split("·")[-2]) == re.findall(r"\d+", reissued.split("·")[-2])
        assert page.locator("[data-state='0:0']").count() >= 1
        shots.take(page, "reissued")


def test_an_admin_adds_an_alarm_rule_and_the_demo_tamper_says_what_its_rule_did(service: RunningService) -> None:
    shots = Shots("alarm-rules")
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: dialog.accept())
        _sign_in(page, service)
        page.goto(service.base_url + "/console/alarms")
        page.click("[data-testid=alarm-rules-link]")
        assert page.locator("[data-testid=alarm-rules] tr[data-rule-id]").count() == 2  # the demo's two rules
        page.fill("[data-testid=alarm-rule-form] input[name=name]", "Stuck commands to the NOC")
        page.fill("[data-testid=alarm-rule-form] input[name=kind]", "commands_stuck")
        page.fill("[data-testid=alarm-rule-form] input[name=recipients]", "noc@demo-utility.example")
        page.click("[data-testid=save-rule]")
        page.wait_for_url(re.compile(r"ok=alarm_rule_saved"))
        assert "noc@demo-utility.example" in page.inner_text("[data-testid=alarm-rules]")
        shots.take(page, "rules")

        deadline = time.monotonic() + 60  # the scheduler applies the rules to the demo's alarms at start
        while True:
            page.goto(service.base_url + "/console/alarms?open=true")
            actions = page.locator("[data-testid^=alarm-action-]")
            if actions.count():
                break
            assert time.monotonic() < deadline, "no alarm shows what its rule did"
            time.sleep(1)
        assert "automatic actions are not enabled" in actions.first.inner_text()
        shots.take(page, "tamper-action-not-enabled")
