"""Meters received, in headless Chromium on `smsmeter serve --demo`: the admin opens the meters page (the demo's
last delivery is in stock), uploads the factory's next key file with a wrong transport key (refused, nothing
imported), then with the right one (imported: the meters are in stock), opens one and changes its profile."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing.rules.key_file import ExportRow, write_key_file
from meter_protocol import meter_code_with_check_digit
from smsmeter.demo import data
from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    with running_service(tmp_path_factory.mktemp("service"), {}, args=("--demo",)) as running:
        yield running


def test_the_admin_receives_a_key_file_and_sets_a_meter_s_profile(service: RunningService, tmp_path: Path) -> None:
    shots = Shots("key-file-journey")
    codes = [meter_code_with_check_digit(f"8866{n:015d}") for n in (1, 2)]
    rows = [
        ExportRow(c, f"3736966{n:04d}", 0, secrets.token_bytes(16), "binary", "2.5.0", "electricity")
        for n, c in enumerate(codes, start=1)
    ]
    key_file = tmp_path / "factory-delivery-2.csv"
    key_file.write_bytes(write_key_file(rows, data.DEMO_TRANSPORT_KEY))
    admin, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.goto(service.base_url + "/login")
        page.fill("#username", admin)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/console"))
        page.click("nav >> text=Meters in stock")
        page.wait_for_url(re.compile(r"/console/meters$"))
        stock = page.locator("[data-testid=stock]")
        assert data.stock_meter_code(1) in stock.inner_text()
        shots.take(page, "stock")

        page.set_input_files("#key_file", str(key_file))
        page.fill("#transport_key", "00" * 16)
        page.click("[data-testid=key-file-submit]")
        assert "not the key the file was wrapped under" in page.inner_text("body")
        assert codes[0] not in page.inner_text("body")
        shots.take(page, "wrong-transport-key")

        page.goto(service.base_url + "/console/meters")
        page.set_input_files("#key_file", str(key_file))
        page.fill("#transport_key", data.DEMO_TRANSPORT_KEY.hex())
        page.click("[data-testid=key-file-submit]")
        page.wait_for_selector("[data-testid=keys-imported]")
        assert "2 meters registered in stock" in page.inner_text("[data-testid=keys-imported]")
        shots.take(page, "imported")

        page.click(f"text={codes[1]}")
        page.wait_for_url(re.compile(r"/console/meters/\d+$"))
        assert page.inner_text("[data-testid=meter-status]").strip() == "stock"
        assert page.inner_text("[data-testid=meter-profile]").strip() == "binary"
        page.select_option("#profile", "xml")
        page.click("[data-testid=profile-submit]")
        page.wait_for_selector("[data-testid=flash]")
        assert page.inner_text("[data-testid=meter-profile]").strip() == "xml"
        shots.take(page, "profile-xml")
