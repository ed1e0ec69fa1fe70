"""Money decisions a person makes: payment conflicts listed with both sides and resolved (credited as the
provider reported them, or dismissed), charges and write-offs on an account, and the refund of a cash
payment — from the console and /api/v1, each audited with before and after."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select

from billing.topup import TopUpPolicy
from gateway.keys import KeyRing
from payments.events import PaymentLocator, PaymentSucceeded
from payments.processing import Outcome, process_event
from store.schema.ledger import ledger_entries, topups
from store.schema.payments import payment_conflicts, payments
from store.uow import UnitOfWork
from tests.integration.web.helpers import MASTER_KEY, Seeded, login
from tests.integration.web.test_registry_doors import api_key, audit_rows
from web.keys import CLOCK
from web.webhooks import BillingApplier


async def _conflict(client: TestClient, uow: UnitOfWork, event_id: str, reference: str, amount: int) -> int:
    """A Stripe payment that payments holds as a conflict (nothing credited), as a webhook would make it."""
    event = PaymentSucceeded(
        event_id=event_id,
        event_type="checkout.session.completed",
        occurred_at=client.app[CLOCK](),
        payment=PaymentLocator("stripe", f"cs_{event_id}", reference=reference),
        amount_minor=amount,
        currency="USD",
    )
    result = await process_event(uow, event, BillingApplier(KeyRing(MASTER_KEY), TopUpPolicy()), client.app[CLOCK]())
    assert result.outcome is Outcome.CONFLICT
    async with uow.connect() as conn:
        return int(await conn.scalar(select(payment_conflicts.c.id).where(payment_conflicts.c.event_id == event_id)))


async def _asked(uow: UnitOfWork, seeded: Seeded, reference: str, amount: int, now: object) -> int:
    async with uow.begin() as conn:
        return int(
            await conn.scalar(
                insert(payments)
                .values(
                    provider="stripe",
                    provider_ref=f"cs_{reference}",
                    reference=reference,
                    subscriber_id=seeded.subscriber_ids[0],
                    meter_id=seeded.meter_ids[0],
                    amount_minor=amount,
                    currency="USD",
                    status="pending",
                    created_at=now,
                    updated_at=now,
                )
                .returning(payments.c.id)
            )
        )


async def test_payment_conflicts_are_listed_and_resolved_through_the_api(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    now = client.app[CLOCK]()
    payment_id = await _asked(uow, seeded, "ref-amount", 1000, now)
    differs = await _conflict(client, uow, "evt_1", "ref-amount", 1200)
    unknown = await _conflict(client, uow, "evt_2", "ref-nobody", 700)
    viewer = await api_key(uow, client, "viewer")
    listing = await (await client.get("/api/v1/payment-conflicts?open=true", headers=viewer)).json()
    assert [(c["id"], c["reason"], c["creditable"]) for c in listing["items"]] == [
        (unknown, "unknown payment reference", True),
        (differs, "amount differs", True),
    ]
    assert listing["items"][1]["asked_minor"] == 1000
    assert listing["items"][1]["details"]["amount_minor"] == 1200
    body = {"resolution": "credit", "note": "the customer paid 12.00 at the kiosk"}
    assert (await client.post(f"/api/v1/payment-conflicts/{differs}/resolve", json=body, headers=viewer)).status == 403

    operator = await api_key(uow, client, "operator")
    response = await client.post(f"/api/v1/payment-conflicts/{differs}/resolve", json=body, headers=operator)
    assert response.status == 200, await response.text()
    resolved = await response.json()
    assert (resolved["resolution"], resolved["already_resolved"]) == ("credit", False)
    assert resolved["command_id"] is not None  # the credit is on its way to the meter
    async with uow.connect() as conn:
        paid = (await conn.execute(select(payments).where(payments.c.id == payment_id))).mappings().one()
        topup = (await conn.execute(select(topups).where(topups.c.id == resolved["topup_id"]))).mappings().one()
    assert (paid["status"], paid["amount_minor"]) == ("paid", 1200)
    assert (topup["amount_minor"], topup["subscriber_id"]) == (1200, seeded.subscriber_ids[0])
    again = await client.post(f"/api/v1/payment-conflicts/{differs}/resolve", json=body, headers=operator)
    assert (await again.json())["already_resolved"] is True
    (row,) = await audit_rows(uow, "payment_conflict.resolve")
    assert row["before"]["resolved"] is False
    assert row["after"]["resolution"] == "credit"
    assert row["after"]["amount_minor"] == 1200

    no_one = await client.post(f"/api/v1/payment-conflicts/{unknown}/resolve", json=body, headers=operator)
    assert no_one.status == 422  # our reference was unknown: who is it for?
    response = await client.post(
        f"/api/v1/payment-conflicts/{unknown}/resolve",
        json={**body, "subscriber_code": seeded.subscriber_codes[1]},
        headers=operator,
    )
    assert response.status == 200, await response.text()
    async with uow.connect() as conn:
        credited = await conn.scalar(
            select(topups.c.subscriber_id).where(topups.c.id == (await response.json())["topup_id"])
        )
    assert credited == seeded.subscriber_ids[1]
    assert (await client.post("/api/v1/payment-conflicts/999/resolve", json=body, headers=operator)).status == 404
    listing = await (await client.get("/api/v1/payment-conflicts?open=true", headers=viewer)).json()
    assert listing["items"] == []


async def test_charges_write_offs_and_cash_refunds_through_the_api(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    sid = seeded.subscriber_ids[0]  # 10.00 in the wallet
    operator = await api_key(uow, client, "operator")
    charge = {"kind": "fixed_charge", "amount_minor": 300, "memo": "meter seal replaced"}
    assert (await client.post(f"/api/v1/subscribers/{sid}/charges", json=charge, headers=operator)).status == 422
    key = {**operator, "Idempotency-Key": "charge-0001"}
    response = await client.post(f"/api/v1/subscribers/{sid}/charges", json=charge, headers=key)
    assert response.status == 201, await response.text()
    assert (await response.json())["after"] == {"wallet_minor": 1000, "debt_minor": -300}
    twice = await client.post(f"/api/v1/subscribers/{sid}/charges", json=charge, headers=key)
    assert (twice.status, (await twice.json())["duplicate"]) == (200, True)
    write_off = {"book": "debt", "amount_minor": 100, "memo": "goodwill"}
    refused = await client.post(
        f"/api/v1/subscribers/{sid}/adjustments", json=write_off, headers={**operator, "Idempotency-Key": "w-000001"}
    )
    assert refused.status == 403  # write-offs are the admin's
    admin = await api_key(uow, client, "admin")
    response = await client.post(
        f"/api/v1/subscribers/{sid}/adjustments", json=write_off, headers={**admin, "Idempotency-Key": "w-000001"}
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["after"] == {"wallet_minor": 1000, "debt_minor": -200}
    too_much = await client.post(
        f"/api/v1/subscribers/{sid}/adjustments",
        json={**write_off, "amount_minor": 500},
        headers={**admin, "Idempotency-Key": "w-000002"},
    )
    assert too_much.status == 422  # the debt book never turns positive
    (charged,) = await audit_rows(uow, "ledger.charge")
    assert charged["before"] == {"wallet_minor": 1000, "debt_minor": 0}
    assert charged["after"]["debt_minor"] == -300
    (written,) = await audit_rows(uow, "ledger.write_off")
    assert (written["before"]["debt_minor"], written["after"]["debt_minor"]) == (-300, -200)

    cashier = await api_key(uow, client, "cashier")
    paid = await client.post(
        "/api/v1/payments",
        json={"provider_ref": "BANK-1", "amount_minor": 500, "subscriber_code": seeded.subscriber_codes[0]},
        headers=cashier,
    )
    bank_topup = (await paid.json())["topup_id"]
    not_cash = await client.post(
        f"/api/v1/topups/{bank_topup}/refund", json={"reason": "x"}, headers={**cashier, "Idempotency-Key": "r-000001"}
    )
    assert not_cash.status == 422  # a provider's refund comes from the provider


async def test_a_cashier_refunds_a_cash_payment_and_an_operator_resolves_a_conflict_in_the_console(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    sid = seeded.subscriber_ids[1]
    await login(client, "cashier")
    card = await (await client.get(f"/console/subscribers/{sid}")).text()
    form = _hidden(card, f"/console/subscribers/{sid}/topup")
    await client.post(f"/console/subscribers/{sid}/topup", data={**form, "amount": "7.00"})
    card = await (await client.get(f"/console/subscribers/{sid}")).text()
    action = re.search(r'action="(/console/topups/\d+/refund)"', card)
    assert action is not None
    fields = _hidden(card, action.group(1))
    response = await client.post(
        action.group(1), data={**fields, "amount": "2.50", "reason": "paid twice by mistake"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    assert "ok=refunded" in response.headers["Location"]
    again = await client.post(
        action.group(1), data={**fields, "amount": "2.50", "reason": "paid twice by mistake"}, allow_redirects=False
    )
    assert again.status == 303  # the same form twice: one refund
    async with uow.connect() as conn:
        refunds = (
            await conn.scalars(select(ledger_entries.c.amount_minor).where(ledger_entries.c.entry_type == "refund"))
        ).all()
    assert sum(refunds) == -250
    (row,) = await audit_rows(uow, "cash.refund")
    assert (row["before"]["reversed_minor"], row["after"]["reversed_minor"]) == (0, 250)
    assert row["after"]["reason"] == "paid twice by mistake"
    (reversal,) = await audit_rows(uow, "payment.refund")
    assert reversal["actor"] == "cashier"

    await client.post("/logout", data={"csrf_token": fields["csrf_token"]})
    now = client.app[CLOCK]()
    await _asked(uow, seeded, "ref-c", 1000, now)
    conflict_id = await _conflict(client, uow, "evt_c", "ref-c", 900)
    await login(client, "operator")
    page = await (await client.get("/console/payment-conflicts")).text()
    assert "amount differs" in page
    resolve = f"/console/payment-conflicts/{conflict_id}/resolve"
    response = await client.post(
        resolve,
        data={**_hidden(page, resolve), "resolution": "dismiss", "note": "refunded at Stripe by hand"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/console/payment-conflicts?ok=conflict_dismiss"
    page = await (await client.get("/console/payment-conflicts?open=false")).text()
    assert 'data-testid="resolved"' in page
    assert "refunded at Stripe by hand" in page


def _hidden(html: str, action: str) -> dict[str, str]:
    form = html[html.index(f'action="{action}"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))
