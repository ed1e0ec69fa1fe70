"""In Chromium on the demo (`serve --demo`): an operator opens a meter card, sees its 90 days of readings as
a daily chart, its load profile and its register history (the simulated meter keeps reporting), types in a
reading taken by hand and finds it in the history with its source and validation status; then uploads a
CSV file of readings. Screenshots in tests/artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    env = {"SMSMETER_SIMULATOR_REPORT_INTERVAL_S": "2", "SMSMETER_PAYMENTS_RECONCILE_ENABLED": "false"}
    with running_service(tmp_path_factory.mktemp("service"), env, args=("--demo",)) as running:
        yield running


def _sign_in(page: object, service: RunningService) -> None:
    username, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    page.goto(service.base_url + "/login")  # type: ignore[attr-defined]
    page.fill("#username", username)  # type: ignore[attr-defined]
    page.fill("#password", password)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/console"))  # type: ignore[attr-defined]


def test_the_meter_card_shows_readings_and_takes_a_reading_by_hand(service: RunningService, tmp_path: Path) -> None:
    shots = Shots("meter-readings")
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        _sign_in(page, service)
        page.goto(service.base_url + "/console/subscribers?q=Popescu")
        page.click("[data-testid=subscriber-link]")
        page.click("[data-testid=meter-link]")
        assert page.locator("[data-testid=daily-chart] rect").count() >= 25
        assert page.locator("[data-testid=profile-chart] rect").count() >= 24  # the demo's hourly load profile
        assert page.locator("[data-testid=readings] tr[data-source=meter_report]").count() > 0
        first = int(page.inner_text("[data-testid=readings-total]"))
        deadline = time.monotonic() + 45
        while int(page.inner_text("[data-testid=readings-total]")) <= first and time.monotonic() < deadline:
            page.wait_for_timeout(2000)
            page.reload()
        assert int(page.inner_text("[data-testid=readings-total]")) > first  # the simulated meter keeps reporting
        shots.take(page, "meter-card-readings")

        page.select_option("[data-testid=reading-register]", "import_wh")
        page.fill("[data-testid=reading-value]", "1,5")
        page.click("[data-testid=reading-save]")
        page.wait_for_url(re.compile(r"ok=reading_entered"))
        row = page.locator("[data-testid=readings] tr[data-source=manual]")
        assert row.count() == 1
        assert row.get_attribute("data-status") == "backwards"  # far below the register the meter reported
        shots.take(page, "reading-entered")

        code = page.inner_text("[data-testid=meter-code]").replace(" ", "")
        csv = tmp_path / "round.csv"
        csv.write_text(f"meter_code,read_at,kwh\n{code},2020-01-01T08:00,12\nnobody,2020-01-01T08:00,1\n")
        page.click("[data-testid=readings-import-link]")
        page.set_input_files("[data-testid=readings-file]", str(csv))
        page.click("[data-testid=readings-upload]")
        report = page.locator("[data-testid=import-report]")
        assert "1 of 2" in report.inner_text()
        assert page.locator("[data-testid=import-rejected] tbody tr").count() == 1
        shots.take(page, "import-report")


def test_the_consumption_dashboard_goes_down_the_hierarchy(service: RunningService) -> None:
    shots = Shots("consumption-dashboard")
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        _sign_in(page, service)
        deadline = time.monotonic() + 60  # the pre-aggregate job takes in the demo's readings at start
        page.goto(service.base_url + "/console/consumption?days=30")
        while page.locator("[data-testid=consumption-chart] rect").count() == 0 and time.monotonic() < deadline:
            page.wait_for_timeout(2000)
            page.reload()
        assert page.locator("[data-testid=consumption-chart] rect").count() >= 25
        shots.take(page, "settlements")
        page.locator("[data-testid=drill]").first.click()
        page.wait_for_url(re.compile(r"by=street"))
        assert page.locator("[data-testid=consumption-members] tbody tr").count() >= 1
        page.locator("[data-testid=drill]").first.click()
        page.wait_for_url(re.compile(r"by=building"))
        page.locator("[data-testid=drill]").first.click()
        page.wait_for_url(re.compile(r"by=meter"))
        shots.take(page, "meters-of-a-building")
        page.locator("[data-testid=consumption-members] tbody a").first.click()
        page.wait_for_url(re.compile(r"/console/meters/\d+"))
