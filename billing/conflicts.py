"""Payment conflicts resolved by a person (docs/operations.md §7.3–7.4): a payment the provider confirmed
that does not match what was asked (amount, currency, subscriber, an unknown reference), or a reversal the
ledger could not make, waits in `payment_conflicts` and never reaches the ledger by itself.

An operator resolves it one of two ways, audited with before and after:
- `credit` — apply the payment as the provider reported it (its amount and currency), to the payment's own
  subscriber, or to the one the operator names when our reference was unknown; through billing's one path
  for payments (ledger, debt recovery, the credit command), once per provider reference;
- `dismiss` — nothing reaches the ledger (refunded at the provider, a test payment, squared by hand with a
  charge or an adjustment); the note says why.

Crediting applies the payment first (idempotent on the provider's reference), then marks the conflict
resolved in a transaction of its own: a crash between the two leaves the conflict open, and resolving it
again finds the payment applied and only marks it.

The conflicts and their payments are payments' rows: read through `payments.conflicts`, written through
`payments.recorded`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from billing import topup
from billing.errors import Conflict, InvalidField, NotFound
from billing.values import PaymentConfirmed
from gateway.keys import KeyRing
from payments.conflicts import conflict_row, conflict_rows, payment_row
from payments.recorded import mark_conflict_resolved, record_paid_as_credited
from store import audit
from store.audit import Actor
from store.bulk import select_among
from store.schema.registry import subscribers
from store.uow import UnitOfWork

_SUBSCRIBER = (subscribers.c.id, subscribers.c.code, subscribers.c.name)


class Resolution(enum.StrEnum):
    CREDIT = "credit"
    DISMISS = "dismiss"


@dataclass(frozen=True, slots=True)
class Resolved:
    conflict_id: int
    resolution: Resolution
    topup_id: int | None
    command_id: int | None
    already: bool  # resolved before this call: nothing changed


def creditable(row: Any) -> bool:
    """A confirmed payment whose amount and currency the provider reported (not a refused reversal)."""
    details = dict(row.details or {})
    return (
        isinstance(details.get("amount_minor"), int)
        and isinstance(details.get("currency"), str)
        and not str(row.reason).startswith("reversal")
    )


async def get_conflict(conn: AsyncConnection, conflict_id: int) -> Any:
    row = await conflict_row(conn, conflict_id)
    if row is None:
        raise NotFound("payment conflict", conflict_id)
    return row


async def _payment_to_credit(
    conn: AsyncConnection, row: Any, subscriber_code: str | None, now: datetime
) -> PaymentConfirmed:
    if not creditable(row):
        raise InvalidField("resolution", f"a {row.reason!r} conflict is not a payment to credit; dismiss it")
    details = dict(row.details)
    payment = None
    if row.payment_id is not None:
        payment = await payment_row(conn, row.payment_id)
    if payment is not None and payment.paid_at is not None and payment.amount_minor == details["amount_minor"]:
        raise Conflict("payment", f"{payment.provider}:{payment.provider_ref} is credited already; dismiss it")
    code = subscriber_code or (None if payment is not None else details.get("subscriber"))
    if payment is None and not code:
        raise InvalidField("subscriber_code", "the payment's reference was unknown: name the subscriber to credit")
    return PaymentConfirmed(
        provider=payment.provider if payment is not None else row.provider,
        provider_ref=payment.provider_ref if payment is not None else row.provider_ref,
        amount_minor=int(details["amount_minor"]),
        currency=str(details["currency"]),
        paid_at=now,
        subscriber_id=payment.subscriber_id if payment is not None and not subscriber_code else None,
        subscriber_code=code if payment is None or subscriber_code else None,
        payment_id=payment.id if payment is not None else None,
        event_id=row.event_id,
    )


async def resolve_conflict(
    uow: UnitOfWork,
    actor: Actor,
    conflict_id: int,
    resolution: Resolution,
    now: datetime,
    *,
    keys: KeyRing,
    note: str,
    subscriber_code: str | None = None,
    policy: topup.TopUpPolicy | None = None,
) -> Resolved:
    """Resolve one conflict (see the module). A resolved conflict stays resolved: resolving it again changes
    nothing and answers `already`. Raises NotFound, InvalidField (no note; not a payment to credit; no
    subscriber for an unknown reference), Conflict (credited already), and what applying a payment raises."""
    note = note.strip()
    if not note or len(note) > 500:
        raise InvalidField("note", "say why, in 1 to 500 characters")
    async with uow.connect() as conn:
        row = await get_conflict(conn, conflict_id)
        if row.resolved_at is not None:
            return Resolved(conflict_id, Resolution(row.resolution or "dismiss"), row.topup_id, None, True)
        payment = await _payment_to_credit(conn, row, subscriber_code, now) if resolution is Resolution.CREDIT else None
    applied = None
    if payment is not None:
        applied = await topup.apply_payment(
            uow, payment, now, keys=keys, policy=policy or topup.TopUpPolicy(), actor=actor
        )
    async with uow.begin() as conn:
        marked = await mark_conflict_resolved(
            conn,
            conflict_id,
            now,
            resolved_by=str(actor),
            resolution=resolution.value,
            note=note,
            topup_id=applied.topup_id if applied else None,
        )
        if not marked:
            again = await get_conflict(conn, conflict_id)
            return Resolved(conflict_id, Resolution(again.resolution or "dismiss"), again.topup_id, None, True)
        if applied is not None and applied.payment_id is not None:
            await record_paid_as_credited(conn, applied.payment_id, applied.amount.minor, now)
        await audit.record(
            conn,
            actor,
            "payment_conflict.resolve",
            now,
            target=f"payment_conflict:{conflict_id}",
            before={
                "resolved": False,
                "reason": row.reason,
                "provider": row.provider,
                "provider_ref": row.provider_ref,
            },
            after={
                "resolved": True,
                "resolution": resolution.value,
                "note": note,
                "topup_id": applied.topup_id if applied else None,
                "amount_minor": applied.amount.minor if applied else None,
                "command_id": applied.command_id if applied else None,
            },
        )
    return Resolved(
        conflict_id,
        resolution,
        applied.topup_id if applied else None,
        applied.command_id if applied else None,
        already=False,
    )


async def conflicts_page(
    conn: AsyncConnection, *, open_only: bool, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Conflicts newest first, each with the payment's subscriber (when known) and whether it may be
    credited."""
    rows, total = await conflict_rows(conn, open_only=open_only, limit=limit, offset=offset)
    ids = {r.subscriber_id for r in rows if r.subscriber_id is not None}
    who = {s.id: s for s in await select_among(conn, _SUBSCRIBER, subscribers.c.id, ids)}
    items = []
    for r in rows:
        subscriber = who.get(r.subscriber_id)
        items.append(
            {
                **dict(r._mapping),
                "subscriber_code": subscriber.code if subscriber else None,
                "subscriber_name": subscriber.name if subscriber else None,
                "creditable": creditable(r),
            }
        )
    return items, total
