"""The STS token journey in headless Chromium on `smsmeter serve --demo`: Maria Rusu's credit is stuck before
1:1 (its SMS timed out); an operator opens her card, issues the STS token and reads its 20 digits; typed at
the reference STS meter (decoder key from the service's own vending key) the token is accepted once and
refused the second time; the card then shows the transfer delivered by token and one credit on the ledger."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from billing.sts_vending import SoftwareTokenGenerator, find_sts_meter
from meter_protocol import sts
from smsmeter.demo import data
from store.engine import create_engine
from store.schema.ledger import topups
from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    with running_service(tmp_path_factory.mktemp("service"), {}, args=("--demo",)) as running:
        yield running


def _var(service: RunningService) -> Path:
    return service.log_path.parent / "var"


def _reference_meter(service: RunningService, topup_id: int) -> sts.StsMeterState:
    """The keypad of the meter the top-up went to, with the decoder key the service derives."""

    async def load() -> sts.StsMeterState:
        engine = create_engine(f"sqlite+aiosqlite:///{_var(service) / 'smsmeter.db'}")
        try:
            async with engine.connect() as conn:
                meter_id = await conn.scalar(
                    topups.select().with_only_columns(topups.c.meter_id).where(topups.c.id == topup_id)
                )
                found = await find_sts_meter(conn, int(meter_id))
                assert found is not None
                master_key = bytes.fromhex((_var(service) / "master.key").read_text().strip())
                key = await SoftwareTokenGenerator(master_key).decoder_key(conn, found)
                return sts.StsMeterState(decoder_key=key, base_date=found.base_date)
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        return pool.submit(asyncio.run, load()).result()


def test_a_stuck_credit_becomes_a_token_typed_at_the_meter_and_the_ledger_shows_one_delivery(
    service: RunningService,
) -> None:
    shots = Shots("sts-token-journey")
    operator, password = (_var(service) / "demo-login.txt").read_text().split()[:2]
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(service.base_url + "/login")
        page.fill("#username", operator)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/console"))
        page.goto(service.base_url + f"/console/subscribers?q={data.STS_STUCK_SUBSCRIBER}")
        page.click(f"text={data.STS_STUCK_SUBSCRIBER}")
        page.wait_for_url(re.compile(r"/console/subscribers/\d+$"))
        card = page.url
        tokens = page.locator("[data-testid=sts-tokens]")
        assert tokens.is_visible()
        row = tokens.locator("tr[data-testid^=sts-topup-]").first
        topup_id = int(str(row.get_attribute("data-testid")).rsplit("-", 1)[1])
        assert page.inner_text(f"[data-testid=delivered-by-{topup_id}]").strip() == "—"
        shots.take(page, "credit-stuck")

        row.locator("[data-testid=issue-sts-token]").click()
        page.wait_for_url(re.compile(r"ok=sts_token"))
        digits = page.inner_text(f"[data-testid=sts-topup-{topup_id}] [data-testid=sts-token]")
        assert re.fullmatch(r"\d{4}( \d{4}){4}", digits.strip()), digits
        assert page.is_visible("[data-testid=receipt]")
        shots.take(page, "token-issued")

        meter = _reference_meter(service, topup_id)
        meter, shown = sts.enter_token(meter, digits)
        assert shown.outcome is sts.Outcome.ACCEPTED
        assert meter.credit(sts.CreditKind.ELECTRICITY_CURRENCY) == data.STS_STUCK_CREDIT_MINOR
        assert sts.enter_token(meter, digits)[1].outcome is sts.Outcome.USED

        page.goto(card)
        assert page.inner_text(f"[data-testid=delivered-by-{topup_id}]").strip() == "token"
        credits = page.locator(
            f"[data-testid=ledger-row][data-entry=credit_sent][data-amount='-{data.STS_STUCK_CREDIT_MINOR}']"
        )
        assert credits.count() == 1
        assert page.locator("[data-testid=issue-sts-token]").count() == 0
        shots.take(page, "one-delivery")
