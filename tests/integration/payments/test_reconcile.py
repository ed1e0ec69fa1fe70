"""Reconciliation against a real Stripe emulator (localstripe): a payment whose webhook never came is found
and applied; the other findings are reported; localstripe's own signed webhooks are accepted (both databases)."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from openpyxl import load_workbook
from sqlalchemy import select, update

from gateway.progress import CommandProgress
from payments.reconcile import format_console, reconcile, write_csv, write_xlsx
from payments.service import WebhookSecrets, WebhookService
from payments.stripe_api import StripeApi
from store.schema.payments import payments, reconciliation_runs
from store.uow import UnitOfWork
from tests.integration.payments.conftest import NOW, add_subscribers, credit_commands, net_received
from tests.integration.payments.helpers import payment_row, pending_topup
from tests.support.stripe_emulator import LocalStripe
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.webhooks import BillingApplier, PaymentServices

WHSEC = "whsec_localstripe_0123456789"


@pytest.fixture
async def api(localstripe: LocalStripe) -> AsyncIterator[StripeApi]:
    client = StripeApi("sk_test_smsmeter", api_base=localstripe.base_url, timeout_s=10)
    try:
        yield client
    finally:
        await client.close()


def _window() -> tuple[datetime, datetime]:
    """Covers our rows (created at NOW) and the emulator's (created at the wall clock)."""
    wall = datetime.now(UTC)
    return min(NOW, wall) - timedelta(hours=1), max(NOW, wall) + timedelta(hours=1)


async def _intent(api: StripeApi, amount: int, reference: str | None) -> str:
    """A PaymentIntent paid by card at the emulator (what Checkout makes when the subscriber pays)."""
    created = await api._client.v1.payment_intents.create_async(
        {
            "amount": amount,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"reference": reference} if reference else {},
        }
    )
    assert created.status == "succeeded"
    return str(created.id)


async def test_reconciliation_applies_the_missed_payment_and_reports_the_rest(
    uow: UnitOfWork, applier: BillingApplier, api: StripeApi, tmp_path: Path
) -> None:
    alice, bob, carol, dan = await add_subscribers(uow, 4)
    start, end = _window()
    # B: paid at Stripe, its webhook never sent
    ref_b, _ = await pending_topup(uow, bob, 1500)
    pi_b = await _intent(api, 1500, ref_b)
    # C: paid at Stripe for a top-up we never started
    pi_c = await _intent(api, 700, "tp_" + "f" * 32)
    # E: Stripe took another amount than was asked
    ref_e, _ = await pending_topup(uow, carol, 1000)
    pi_e = await _intent(api, 1200, ref_e)
    # D: credited here, unknown at Stripe
    # (paid just now: older than `delivery_after` it would be reported as not delivered instead)
    now = datetime.now(UTC)
    ref_d, _ = await pending_topup(uow, dan, 900)
    async with uow.begin() as conn:
        await conn.execute(
            update(payments)
            .where(payments.c.reference == ref_d)
            .values(status="paid", paid_at=now, payment_intent_id="pi_not_at_stripe")
        )
    report = await reconcile(
        uow, api, applier, start, end, now, commands=CommandProgress(), delivery_after=timedelta(hours=6)
    )
    kinds = {line.provider_ref: line.kind for line in report.lines}
    assert kinds[pi_b] == "applied"
    assert kinds[pi_c] == "missing_here"
    assert kinds[pi_e] == "amount_mismatch"
    assert kinds["pi_not_at_stripe"] == "missing_there"
    row_b = await payment_row(uow, ref_b)
    assert (row_b.status, row_b.payment_intent_id, row_b.fee_minor) == ("paid", pi_b, 0)
    assert await net_received(uow, bob.account_id) == 1500
    assert await net_received(uow, carol.account_id) == 0
    assert await credit_commands(uow) == 1
    # a second run finds it matched and applies nothing again
    again = await reconcile(uow, api, applier, start, end, now, commands=CommandProgress())
    assert {line.provider_ref: line.kind for line in again.lines}[pi_b] == "matched"
    assert await net_received(uow, bob.account_id) == 1500
    # the report: console, CSV, XLSX; the run is recorded
    text = format_console(report)
    assert "applied" in text
    assert pi_c in text
    rows = list(csv.DictReader(write_csv(report, tmp_path / "r.csv").read_text().splitlines()))
    assert {r["kind"] for r in rows} >= {"applied", "missing_here", "amount_mismatch", "missing_there"}
    book = load_workbook(write_xlsx(report, tmp_path / "r.xlsx"))
    assert book.sheetnames == ["Summary", "Lines"]
    assert book["Lines"].max_row == len(report.lines) + 1
    async with uow.connect() as conn:
        runs = (await conn.execute(select(reconciliation_runs))).all()
    assert len(runs) == 2
    assert runs[0].counts["applied"] == 1
    del alice


async def test_paid_but_not_delivered_is_reported(uow: UnitOfWork, applier: BillingApplier, api: StripeApi) -> None:
    (alice,) = await add_subscribers(uow, 1)
    ref, _ = await pending_topup(uow, alice, 500)
    pi = await _intent(api, 500, ref)
    now = datetime.now(UTC)
    window = _window()
    await reconcile(uow, api, applier, *window, now, commands=CommandProgress())  # applies it: a credit command at 0:0
    later = now + timedelta(hours=7)
    report = await reconcile(
        uow, api, applier, *window, later, commands=CommandProgress(), delivery_after=timedelta(hours=6)
    )
    (line,) = report.of_kind("not_delivered")
    assert (line.provider_ref, line.command_state) == (pi, "0:0")


async def test_localstripe_signed_webhooks_are_verified_and_applied(
    uow: UnitOfWork, applier: BillingApplier, api: StripeApi, localstripe: LocalStripe
) -> None:
    """localstripe delivers `payment_intent.succeeded` signed with the endpoint secret, as Stripe does."""
    (alice,) = await add_subscribers(uow, 1)
    ref, _ = await pending_topup(uow, alice, 2500)
    service = WebhookService(uow, applier, WebhookSecrets(stripe_secret=WHSEC))

    async def healthy() -> HealthReport:
        return HealthReport("test", ComponentHealth("ok"), ComponentHealth("ok"))

    app = create_app(health_check=healthy, payment_services=PaymentServices(webhooks=service))
    async with TestServer(app, host="127.0.0.1") as server:
        localstripe.register_webhook(str(server.make_url("/webhooks/stripe")), WHSEC, name=f"t{server.port}")
        try:
            await _intent(api, 2500, ref)
            for _ in range(100):  # localstripe sends after about a second
                if (await payment_row(uow, ref)).paid_at is not None:
                    break
                await asyncio.sleep(0.1)
        finally:
            localstripe.register_webhook("http://127.0.0.1:9/gone", WHSEC, name=f"t{server.port}")
    assert (await payment_row(uow, ref)).status == "paid"
    assert await net_received(uow, alice.account_id) == 2500


def test_the_reconcile_command_writes_its_report(localstripe: LocalStripe, tmp_path: Path) -> None:
    from tests.support.service import run_cli

    env = {
        "SMSMETER_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "SMSMETER_STRIPE_API_KEY": "sk_test_smsmeter",
        "SMSMETER_STRIPE_API_BASE": localstripe.base_url,
        "SMSMETER_MASTER_KEY": "000102030405060708090a0b0c0d0e0f",
    }
    day = datetime.now(UTC).date().isoformat()
    result = run_cli(["reconcile", "--from", day, "--to", day, "--out", str(tmp_path / "out")], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "Reconciliation stripe" in result.stdout
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".csv", ".xlsx"]
    listed = run_cli(["reconcile", "--list"], tmp_path, env)
    assert listed.returncode == 0, listed.stderr
    assert "finished" in listed.stdout
    assert "1 runs" in listed.stdout
    again = run_cli(["reconcile", "--resume", "1"], tmp_path, env)  # finished: its report again, nothing redone
    assert again.returncode == 0, again.stderr
    assert "Reconciliation stripe" in again.stdout
    bad = run_cli(["reconcile", "--from", day, "--to", "yesterday"], tmp_path, env)
    assert bad.returncode == 2
    assert "reconcile --to: a date (YYYY-MM-DD) or an ISO time" in bad.stderr
    unknown = run_cli(["reconcile", "--resume", "99"], tmp_path, env)
    assert unknown.returncode == 2
    assert "no reconciliation run 99" in unknown.stderr
    neither = run_cli(["reconcile"], tmp_path, env)
    assert neither.returncode == 2
    assert "--resume RUN, or --list" in neither.stderr
