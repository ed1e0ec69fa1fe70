"""The payment row's own reads and writes that every path shares: find it by any of its ids (locked),
link the provider's ids to it, and the codes of whom it was asked for (asked of billing, through the applier)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.events import PaymentLocator
from payments.ports import PaymentApplier
from store.schema.payments import payments


async def find_payment(conn: AsyncConnection, loc: PaymentLocator) -> Row[Any] | None:
    for column, value in (
        (payments.c.reference, loc.reference),
        (payments.c.checkout_session_id, loc.checkout_session_id),
        (payments.c.payment_intent_id, loc.payment_intent_id),
        (payments.c.charge_id, loc.charge_id),
    ):
        if value:
            row = (await conn.execute(select(payments).where(column == value).with_for_update())).first()
            if row is not None:
                return row
    query = select(payments).where(payments.c.provider == loc.provider, payments.c.provider_ref == loc.provider_ref)
    return (await conn.execute(query.with_for_update())).first()


async def link_ids(conn: AsyncConnection, payment: Row[Any], loc: PaymentLocator, now: datetime) -> None:
    values = {}
    if loc.payment_intent_id and payment.payment_intent_id is None:
        values["payment_intent_id"] = loc.payment_intent_id
    if loc.checkout_session_id and payment.checkout_session_id is None:
        values["checkout_session_id"] = loc.checkout_session_id
    if loc.charge_id and payment.charge_id is None:
        values["charge_id"] = loc.charge_id
    if values:
        await conn.execute(update(payments).where(payments.c.id == payment.id).values(updated_at=now, **values))


async def codes_of(conn: AsyncConnection, applier: PaymentApplier, payment: Row[Any]) -> tuple[str, str | None]:
    """The codes of the subscriber and meter `payment` was asked for, as billing names them."""
    meter_ids = [payment.meter_id] if payment.meter_id is not None else []
    subscriber_codes, meter_codes = await applier.codes(conn, [payment.subscriber_id], meter_ids)
    return subscriber_codes[payment.subscriber_id], meter_codes.get(payment.meter_id)
