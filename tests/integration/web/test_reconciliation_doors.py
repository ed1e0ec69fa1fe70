"""The reconciliation with the payment provider through its doors: /api/v1/reconciliations (start a window,
follow the run, its findings by kind, carry on a run a restart cut off) and the console's Reconciliation page,
on both databases, with the composition root's own reconciler over a provider statement. One process at a time
works on a run: a run another holds answers 409 until its lease lapses. Starting and resuming are audited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from config import WebSettings, load_settings
from gateway.keys import KeyRing
from payments.reconcile_runs import claim_run, open_run
from payments.stripe_api import BalanceTransaction, ProviderPayment
from smsmeter.payments_wiring import ReconcileDoor
from store.schema.payments import payments
from store.uow import UnitOfWork
from tests.integration.web.helpers import MASTER_KEY, FixedClock, Seeded, form_token, login
from tests.integration.web.test_money_doors import _asked
from tests.integration.web.test_registry_doors import api_key, audit_rows
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.jobs import JOBS
from web.keys import Services
from web.webhooks import PaymentServices


@dataclass
class Statement:
    """What the provider lists: succeeded PaymentIntents, and their balance transactions with a fee."""

    intents: list[ProviderPayment] = field(default_factory=list)
    fee_minor: int = 59

    async def list_payment_intents(self, start: datetime, end: datetime) -> list[ProviderPayment]:
        return [pi for pi in self.intents if start <= pi.created < end]

    async def list_balance_transactions(self, start: datetime, end: datetime) -> Sequence[BalanceTransaction]:
        return [
            BalanceTransaction(
                f"txn_{pi.charge_id}",
                pi.charge_id,
                "charge",
                pi.amount_minor,
                self.fee_minor,
                pi.amount_minor - self.fee_minor,
                pi.currency,
                pi.created,
            )
            for pi in await self.list_payment_intents(start, end)
        ]

    def paid(self, intent: str, amount: int, at: datetime, reference: str) -> None:
        self.intents.append(
            ProviderPayment(intent, amount, "USD", at, "succeeded", f"ch_{intent}", {"reference": reference})
        )


async def _healthy() -> HealthReport:
    return HealthReport("test", ComponentHealth("ok"), ComponentHealth("bound"))


@pytest.fixture
def statement() -> Statement:
    return Statement()


@pytest.fixture
def app(
    services: Services,
    web_settings: WebSettings,
    clock: FixedClock,
    uow: UnitOfWork,
    statement: Statement,
    tmp_path: Path,
) -> web.Application:
    settings = load_settings(None, {"SMSMETER_DATA_DIR": str(tmp_path)})
    door = ReconcileDoor(settings, uow, statement, KeyRing(MASTER_KEY), clock)
    return create_app(
        health_check=_healthy,
        services=services,
        web_settings=web_settings,
        clock=clock,
        payment_services=PaymentServices(reconciler=door),
    )


async def test_a_window_is_reconciled_through_the_api_and_the_missed_webhook_credited(
    client: TestClient, seeded: Seeded, uow: UnitOfWork, statement: Statement, clock: FixedClock
) -> None:
    now = clock()
    await _asked(uow, seeded, "tp_missed", 1500, now)  # paid at the provider; its webhook never came
    statement.paid("pi_missed", 1500, now, "tp_missed")
    statement.paid("pi_stranger", 700, now, "tp_never_started")  # paid for a top-up never started here
    viewer, operator = await api_key(uow, client, "viewer"), await api_key(uow, client, "operator")
    window = {"from": (now - timedelta(days=1)).date().isoformat(), "to": now.date().isoformat()}
    assert (await client.post("/api/v1/reconciliations", json=window, headers=viewer)).status == 403
    started = await client.post("/api/v1/reconciliations", json=window, headers=operator)
    assert started.status == 202, await started.text()
    run_id = (await started.json())["id"]
    assert started.headers["Location"] == f"/api/v1/reconciliations/{run_id}"
    await client.app[JOBS].wait_idle()
    run = await (await client.get(f"/api/v1/reconciliations/{run_id}", headers=viewer)).json()
    assert run["status"] == "finished"
    assert run["counts"]["applied"] == 1
    assert run["counts"]["missing_here"] == 1
    assert {(f["kind"], f["provider_ref"]) for f in run["findings"]} == {
        ("applied", "pi_missed"),
        ("missing_here", "pi_stranger"),
    }
    assert run["findings_total"] == 2
    assert run["report_path"].endswith(".xlsx")
    async with uow.connect() as conn:
        paid = (await conn.execute(select(payments).where(payments.c.reference == "tp_missed"))).one()
    assert (paid.status, paid.payment_intent_id, paid.fee_minor) == ("paid", "pi_missed", 59)
    only = await (await client.get(f"/api/v1/reconciliations/{run_id}?kind=applied", headers=viewer)).json()
    assert [f["provider_ref"] for f in only["findings"]] == ["pi_missed"]
    assert only["findings"][0]["command_now"] == "0:0"  # the credit it applied is on its way to the meter
    listing = await (await client.get("/api/v1/reconciliations", headers=viewer)).json()
    assert [(r["id"], r["status"]) for r in listing["items"]] == [(run_id, "finished")]
    # a finished run carried on is answered as it is; nothing is applied twice
    again = await client.post(f"/api/v1/reconciliations/{run_id}/resume", headers=operator)
    assert again.status == 200
    assert (await again.json())["status"] == "finished"
    (audited,) = await audit_rows(uow, "reconciliation.start")
    assert audited["target"] == f"reconciliation:{run_id}"
    assert audited["actor_kind"] == "api_key"
    # bad input: a clear answer naming the field, nothing opened
    bad = await client.post("/api/v1/reconciliations", json={"from": "yesterday", "to": "2026-01-15"}, headers=operator)
    assert bad.status == 422
    assert "from" in (await bad.json())["detail"]
    backwards = {"from": "2026-01-15", "to": "2026-01-10"}
    assert (await client.post("/api/v1/reconciliations", json=backwards, headers=operator)).status == 422
    assert (await client.get("/api/v1/reconciliations/999999", headers=viewer)).status == 404
    assert (await client.get(f"/api/v1/reconciliations/{run_id}?kind=nonsense", headers=viewer)).status == 422


async def test_one_process_at_a_time_works_on_a_run_and_a_lapsed_lease_lets_another_carry_it_on(
    client: TestClient, seeded: Seeded, uow: UnitOfWork, statement: Statement, clock: FixedClock
) -> None:
    now = clock()
    await _asked(uow, seeded, "tp_late", 900, now)
    statement.paid("pi_late", 900, now, "tp_late")
    operator = await api_key(uow, client, "operator")
    # a run another process holds: its lease taken, its work not begun
    held = await open_run(uow, "stripe", now - timedelta(hours=2), now + timedelta(hours=1), now, triggered_by="else")
    async with uow.begin() as conn:
        assert await claim_run(conn, held, now)
    busy = await client.post(f"/api/v1/reconciliations/{held}/resume", headers=operator)
    assert busy.status == 409, await busy.text()
    run = await (await client.get(f"/api/v1/reconciliations/{held}", headers=operator)).json()
    assert run["status"] == "running"
    assert run["findings"] == []
    clock.advance(minutes=6)  # the holder died: its lease lapses
    resumed = await client.post(f"/api/v1/reconciliations/{held}/resume", headers=operator)
    assert resumed.status == 202
    await client.app[JOBS].wait_idle()
    run = await (await client.get(f"/api/v1/reconciliations/{held}?kind=applied", headers=operator)).json()
    assert run["status"] == "finished"
    assert [f["provider_ref"] for f in run["findings"]] == ["pi_late"]
    assert [r["target"] for r in await audit_rows(uow, "reconciliation.resume")] == [f"reconciliation:{held}"]


async def test_the_console_reconciles_a_window_and_shows_what_it_found(
    client: TestClient, seeded: Seeded, uow: UnitOfWork, statement: Statement, clock: FixedClock
) -> None:
    now = clock()
    await _asked(uow, seeded, "tp_console", 1200, now)
    statement.paid("pi_console", 1000, now, "tp_console")  # the provider took another amount
    await login(client, "operator")
    page = await client.get("/console/reconciliation")
    assert page.status == 200
    html = await page.text()
    assert 'data-testid="reconcile-form"' in html
    assert "No reconciliation yet." in html
    token = await form_token(client, "/console/reconciliation")
    day = now.date().isoformat()
    response = await client.post(
        "/console/reconciliation", data={"from": day, "to": day, "csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    location = response.headers["Location"]
    assert location.startswith("/console/reconciliation/")
    await client.app[JOBS].wait_idle()
    run_page = await (await client.get(location)).text()
    assert 'data-testid="found-amount_mismatch">1<' in run_page
    assert "pi_console" in run_page
    wrong = await client.post(
        "/console/reconciliation", data={"from": "soon", "to": day, "csrf_token": token}, allow_redirects=False
    )
    assert wrong.status == 422
    await login(client, "auditor")
    assert 'data-testid="reconcile-form"' not in await (await client.get("/console/reconciliation")).text()
