"""In Chromium on the demo (`serve --demo`): an operator opens the reading plans, finds the demo's nightly plan
with last night's run (the meters that did not answer named, their read requests timed out), adds a plan for
one settlement, runs it now and watches the simulated meters answer until none is on its way; the demo's water
meter reads in m³ on its card. Screenshots in tests/artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from smsmeter.demo import data
from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    env = {"SMSMETER_PAYMENTS_RECONCILE_ENABLED": "false"}
    with running_service(tmp_path_factory.mktemp("service"), env, args=("--demo",)) as running:
        yield running


def _sign_in(page: object, service: RunningService) -> None:
    username, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    page.goto(service.base_url + "/login")  # type: ignore[attr-defined]
    page.fill("#username", username)  # type: ignore[attr-defined]
    page.fill("#password", password)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/console"))  # type: ignore[attr-defined]


def test_an_operator_plans_a_reading_and_sees_who_did_not_answer(service: RunningService) -> None:
    shots = Shots("reading-plans")
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        _sign_in(page, service)
        page.click("a[href='/console/reading-plans']")
        names = page.locator("[data-testid=reading-plans] [data-testid=plan-name]").all_inner_texts()
        assert data.NIGHTLY_READING.name in names
        assert data.WEEKLY_PROFILE.name in names
        shots.take(page, "plans")

        last_night = page.locator("[data-testid=reading-runs] [data-testid=run-link]").last
        last_night.click()
        assert int(page.inner_text("[data-testid=run-not-answered]")) == data.SILENT_LAST_NIGHT
        assert int(page.inner_text("[data-testid=run-answered]")) > 0
        assert page.locator("[data-testid=unanswered] tr[data-waiting=no]").count() == data.SILENT_LAST_NIGHT
        assert "timed_out" in page.locator("[data-testid=unanswered]").inner_html()
        shots.take(page, "last-night")

        page.goto(service.base_url + "/console/reading-plans")
        page.fill("[data-testid=plan-name-input]", "Balti registers")
        page.select_option("[data-testid=plan-group-kind]", "settlement")
        page.fill("[data-testid=plan-group-code]", "6401")
        page.click("[data-testid=save-plan]")
        page.wait_for_url(re.compile(r"ok=reading_plan_saved"))
        row = page.locator("[data-testid=reading-plans] tr", has_text="Balti registers")
        row.locator("[data-testid=run-now]").click()
        page.wait_for_url(re.compile(r"/console/reading-runs/\d+"))
        queued = int(page.inner_text("[data-testid=run-queued]"))
        assert queued > 0  # the demo sets no licensed rate: every meter of Balti in the first pass
        deadline = time.monotonic() + 60
        while int(page.inner_text("[data-testid=run-answered]")) < queued and time.monotonic() < deadline:
            page.wait_for_timeout(2000)
            page.reload()
        assert int(page.inner_text("[data-testid=run-answered]")) == queued  # the simulated meters answered
        assert int(page.inner_text("[data-testid=run-waiting]")) == 0
        assert page.inner_text("[data-testid=run-status]").strip() == "done"
        shots.take(page, "run-answered")


def test_the_demo_water_meter_reads_in_cubic_metres(service: RunningService) -> None:
    shots = Shots("water-meter")
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        _sign_in(page, service)
        page.goto(service.base_url + "/console/subscribers?q=Lungu")
        page.click("[data-testid=subscriber-link]")
        page.click("[data-testid=meter-link]")
        readings = page.locator("#readings")
        assert "(m³)" in readings.inner_text()
        assert "kWh" not in readings.inner_text()
        deadline = time.monotonic() + 60  # the consumption job takes in the demo's readings at start
        while page.locator("[data-testid=daily-chart] rect").count() < 25 and time.monotonic() < deadline:
            page.wait_for_timeout(2000)
            page.reload()
        assert page.locator("[data-testid=daily-chart] rect").count() >= 25
        shots.take(page, "water-meter-card")
