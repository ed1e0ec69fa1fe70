"""The `topups` table: what a top-up is (`TopUpResult`), the policy it is applied under, and its reads.

A top-up's `idempotency_key` is "<provider>:<provider_ref>" (`topup_key`); a won dispute's reinstatement
is a top-up of its own, "<provider>:<provider_ref>:reinstate:<n>".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import BillingError, NotFound
from billing.rules.money import Money
from store.schema import ledger as L  # noqa: N812

MAX_CREDIT_MINOR = 0xFFFF_FFFF  # the protocol's top-up amount field


class PaymentNotApplied(BillingError):
    """A reversal for a payment billing has not applied (yet): webhooks arrive in any order."""

    def __init__(self, provider: str, provider_ref: str) -> None:
        super().__init__(f"payment {provider}:{provider_ref} has not been applied")
        self.provider = provider
        self.provider_ref = provider_ref


@dataclass(frozen=True, slots=True)
class TopUpPolicy:
    recovery_bp: int = 2500  # share of every payment that repays arrears first
    min_debt_minor: int = 100  # a debt below this counts as cleared (reconnect)
    utility: str = ""  # the utility's name, for the reconnect notice
    payment_notice: tuple[str, ...] = ()  # the channels (sms, email) a credited top-up is told on


DEFAULT_POLICY = TopUpPolicy()


@dataclass(frozen=True, slots=True)
class TopUpResult:
    topup_id: int
    account_id: int
    subscriber_id: int
    meter_id: int | None
    payment_id: int | None
    command_id: int | None  # the credit command; None when there is no meter (the credit waits)
    amount: Money
    recovered: Money
    vended: Money
    transfer_id: int | None
    state: str  # queued | delivered | failed | held | reversed
    duplicate: bool  # True: this payment was applied before; nothing new happened
    reconnect_command_id: int | None = None
    receipt_number: str | None = None
    delivered_by: str | None = None  # sms | token (docs/sts.md)
    sts_token: str | None = None


@dataclass(frozen=True, slots=True)
class ReversalResult:
    topup_id: int
    from_wallet: Money
    to_debt: Money
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ReinstatementResult:
    topup_id: int
    debt_cancelled: Money  # of the debt the payment's own reversals created
    credited: Money  # what was left: new credit
    command_id: int | None  # the credit command of the new credit, when one was sent
    duplicate: bool


def topup_key(provider: str, provider_ref: str) -> str:
    return f"{provider}:{provider_ref}"


def result_of(row: Any, *, duplicate: bool) -> TopUpResult:
    currency = row.currency
    return TopUpResult(
        topup_id=row.id,
        account_id=row.account_id,
        subscriber_id=row.subscriber_id,
        meter_id=row.meter_id,
        payment_id=row.payment_id,
        command_id=row.command_id,
        amount=Money(int(row.amount_minor), currency),
        recovered=Money(int(row.recovered_minor), currency),
        vended=Money(int(row.vend_minor), currency),
        transfer_id=row.transfer_id,
        state=row.state,
        duplicate=duplicate,
        reconnect_command_id=row.reconnect_command_id,
        receipt_number=row.receipt_number,
        delivered_by=row.delivered_by,
        sts_token=row.sts_token,
    )


async def get_top_up(conn: AsyncConnection, topup_id: int) -> TopUpResult:
    row = (await conn.execute(select(L.topups).where(L.topups.c.id == topup_id))).first()
    if row is None:
        raise NotFound("top-up", topup_id)
    return result_of(row, duplicate=False)


async def top_ups_of(conn: AsyncConnection, subscriber_id: int, *, limit: int = 50) -> list[TopUpResult]:
    t = L.topups.c
    rows = await conn.execute(
        select(L.topups).where(t.subscriber_id == subscriber_id).order_by(t.id.desc()).limit(limit)
    )
    return [result_of(r, duplicate=False) for r in rows]


async def find_topup(conn: AsyncConnection, key: str) -> Any:
    return (await conn.execute(select(L.topups).where(L.topups.c.idempotency_key == key))).first()


async def find_topups(conn: AsyncConnection, keys: list[str]) -> dict[str, Any]:
    """The top-ups of `keys` that exist, by key (one statement)."""
    if not keys:
        return {}
    rows = await conn.execute(select(L.topups).where(L.topups.c.idempotency_key.in_(keys)))
    return {row.idempotency_key: row for row in rows}
