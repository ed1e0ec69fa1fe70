"""Scratch-card vouchers (docs/self-service.md): a batch of single-use codes worth one amount each, made by a
cashier or admin (only each code's SHA-256 is kept), paid by SMS with `PAY <code>` (billing.self_service), and
withdrawn (`void_vouchers`): a whole batch or one code, e.g. a stolen or misprinted run. A voided code is
refused with its own answer; a code already used stays used (its top-up is not undone here). Every change is
audited in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import InvalidField, NotFound
from billing.rules import self_service as rules
from billing.rules.money import Money
from store import audit
from store.audit import Actor
from store.schema.self_service import voucher_batches, vouchers
from store.uow import UnitOfWork

MAX_BATCH = 10_000  # vouchers in one batch


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class VoucherBatch:
    id: int
    amount: Money
    codes: tuple[str, ...]  # shown once, to print; only their SHA-256 is kept


def _random_digits() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(rules.VOUCHER_DIGITS - 1))


async def generate_vouchers(
    uow: UnitOfWork,
    actor: Actor,
    count: int,
    amount: Money,
    now: datetime,
    *,
    note: str | None = None,
    draw: Callable[[], str] = _random_digits,
) -> VoucherBatch:
    """A batch of `count` single-use codes worth `amount` each, audited. Raises InvalidField."""
    if not 1 <= count <= MAX_BATCH:
        raise InvalidField("count", f"1 to {MAX_BATCH} vouchers a batch")
    if amount.minor <= 0:
        raise InvalidField("amount", "a voucher is worth more than nothing")
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        code = rules.voucher_code(draw())
        if code not in seen:
            seen.add(code)
            codes.append(code)
    async with uow.begin() as conn:
        batch_id = await conn.scalar(
            insert(voucher_batches)
            .values(
                amount_minor=amount.minor, currency=amount.currency, count=count, note=note,
                created_by=str(actor), created_at=now,
            )
            .returning(voucher_batches.c.id)
        )  # fmt: skip
        assert batch_id is not None
        taken = set(
            (
                await conn.execute(
                    select(vouchers.c.code_hash).where(vouchers.c.code_hash.in_([code_hash(c) for c in codes]))
                )
            )
            .scalars()
            .all()
        )
        if taken:  # a code already issued (1 in 10^13 a code): draw again rather than fail
            raise InvalidField("count", "a drawn code was already issued; generate the batch again")
        await conn.execute(
            insert(vouchers),
            [
                {
                    "batch_id": batch_id, "code_hash": code_hash(c), "last4": c[-4:], "amount_minor": amount.minor,
                    "currency": amount.currency, "status": "new", "created_at": now,
                }
                for c in codes
            ],
        )  # fmt: skip
        await audit.record(
            conn, actor, "voucher.generate", now, target=f"voucher_batch:{batch_id}",
            after={"count": count, "amount_minor": amount.minor, "currency": amount.currency, "note": note},
        )  # fmt: skip
    return VoucherBatch(int(batch_id), amount, tuple(codes))


async def voucher_batches_list(conn: AsyncConnection, *, limit: int = 50) -> list[dict[str, Any]]:
    b, v = voucher_batches.c, vouchers.c
    used = (
        select(
            v.batch_id,
            func.count().filter(v.status == "used").label("used"),
            func.count().filter(v.status == "void").label("void"),
        )
        .group_by(v.batch_id)
        .subquery()
    )
    rows = await conn.execute(
        select(
            voucher_batches,
            func.coalesce(used.c.used, 0).label("used"),
            func.coalesce(used.c.void, 0).label("void"),
        )
        .outerjoin(used, used.c.batch_id == b.id)
        .order_by(b.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


@dataclass(frozen=True, slots=True)
class Voided:
    batch_id: int
    voided: int  # codes withdrawn now
    used: int  # codes of the batch (or the one code) already used: they stay used
    already_void: int


async def void_vouchers(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    *,
    reason: str,
    batch_id: int | None = None,
    code: str | None = None,
) -> Voided:
    """Withdraw the unused codes of batch `batch_id`, or the one `code` (as printed or typed); audited
    `voucher.void`. Raises InvalidField (no reason, neither or both of batch and code, a code that does not
    read) and NotFound."""
    reason = reason.strip()
    if not reason or len(reason) > 200:
        raise InvalidField("reason", "say why, in at most 200 characters")
    if (batch_id is None) == (code is None):
        raise InvalidField("batch_id", "a batch or a code, one of the two")
    v = vouchers.c
    async with uow.begin() as conn:
        if code is not None:
            read = rules.read_voucher_code(code)
            if read is None:
                raise InvalidField("code", "14 digits with a valid check digit")
            where = v.code_hash == code_hash(read)
        else:
            where = v.batch_id == batch_id
        rows = (await conn.execute(select(v.id, v.batch_id, v.status, v.last4).where(where).with_for_update())).all()
        if not rows:
            raise NotFound("voucher_batch", batch_id) if code is None else NotFound("voucher", f"…{code[-4:]}")
        fresh = [r.id for r in rows if r.status == "new"]
        if fresh:
            await conn.execute(update(vouchers).where(v.id.in_(fresh), v.status == "new").values(status="void"))
        done = Voided(
            int(rows[0].batch_id),
            len(fresh),
            sum(1 for r in rows if r.status == "used"),
            sum(1 for r in rows if r.status == "void"),
        )
        target = f"voucher:{rows[0].id}" if code is not None else f"voucher_batch:{done.batch_id}"
        after: dict[str, Any] = {"voided": done.voided, "used": done.used, "reason": reason}
        if code is not None:
            after["last4"] = rows[0].last4
        await audit.record(conn, actor, "voucher.void", now, target=target, after=after)
    return done


__all__ = [
    "MAX_BATCH",
    "Voided",
    "VoucherBatch",
    "code_hash",
    "generate_vouchers",
    "void_vouchers",
    "voucher_batches_list",
]
