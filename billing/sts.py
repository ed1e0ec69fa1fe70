"""STS keypad tokens as the other path of one transfer (docs/sts.md, "One transfer, two paths").

A credit sent by SMS and an STS token for it are ONE transfer (one `topups` row, one ledger posting made
when the payment was applied). `issue_credit_token` turns a credit that is stuck before 1:1 into a token,
in one transaction with its audit row:

- a credit whose command has not left (0:0) has that command cancelled: the SMS never goes;
- a credit whose command failed (a final state other than 1:1) needs nothing cancelled;
- a credit whose SMS has left but is not acknowledged is only turned into a token once it has been open
  longer than `policy.stuck_after` (the SMS may still arrive; before that the request is refused);
- the top-up becomes `delivered` with `delivered_by = token` and keeps the 20 digits (shown again on the
  portal, the meter card and the receipt — asking twice gives the same token, never a second one).

Later, a 1:1 of that SMS (it did arrive after all) is recorded on the top-up (`sms_acked_at`) and raises a
`double_delivery` alarm: the ledger is not credited twice (it never credits at 1:1), the top-up stays
delivered by token, and an operator charges back what the meter got twice. A credit that reached 1:1 first
is `delivered_by = sms` and gets no token.

The key change pair (the 2024 TID rollover: KRN+1, rollover to the 2014 base date) is issued per meter and
its state kept (`issued`, then `accepted` when the meter's display confirmed it and an operator says so).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing import ledger
from billing.errors import Conflict, InvalidField, NotFound
from billing.rules.ledger import Book, EntryType, Posting
from billing.rules.money import Money
from billing.sts_vending import StsMeter, TokenGenerator, find_sts_meter, sts_meter_of
from gateway import outbox
from gateway.errors import CannotCancel
from gateway.states import CommandState
from meter_protocol import sts
from store import audit
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812
from store.schema.commands import alarms, commands
from store.schema.sts import sts_meters
from store.uow import UnitOfWork

RandomNibble = Callable[[], int]
ROLLOVER_AT = sts.BASE_DATE_1993 + timedelta(minutes=1 << 24)  # 2024-11-24 10:16: the 1993 TIDs run out


def _random_nibble() -> int:
    return secrets.randbelow(16)


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    stuck_after: timedelta = timedelta(hours=1)  # an SMS credit open this long may become a token


@dataclass(frozen=True, slots=True)
class IssuedToken:
    topup_id: int
    meter_id: int
    token: str  # 20 digits
    amount: Money  # what the token carries
    remainder: Money  # what a token cannot carry exactly (back to the wallet)
    cancelled_command_id: int | None
    duplicate: bool  # the token was issued before; this is the same one


def grouped(token: str) -> str:
    """20 digits as they are printed: five groups of four."""
    return " ".join(token[i : i + 4] for i in range(0, len(token), 4))


async def register_keypad(
    uow: UnitOfWork,
    actor: Actor,
    meter_id: int,
    now: datetime,
    *,
    supply_group_code: str,
    tariff_index: int = 1,
    key_revision: int = 1,
    key_type: int = 2,
    iin: str = "600727",
    drn: str | None = None,
    base_date_year: int | None = None,
) -> StsMeter:
    """Record that a meter has an STS keypad, with its parameters. `drn` defaults to the meter's code's
    last 11 digits; the base date to the one whose TIDs reach `now` (2014 after the 2024 rollover).
    Raises NotFound, InvalidField, Conflict (it has one already)."""
    from store.schema.registry import meters

    if base_date_year is None:
        base_date_year = 1993 if now < ROLLOVER_AT else 2014
    if base_date_year not in (1993, 2014):
        raise InvalidField("base_date_year", "1993 or 2014")
    if not 0 <= tariff_index <= 99 or not 0 <= key_type <= 3 or not 1 <= key_revision <= 9:
        raise InvalidField("sts", "tariff index 0-99, key type 0-3, key revision 1-9")
    async with uow.begin() as conn:
        code = await conn.scalar(select(meters.c.code).where(meters.c.id == meter_id))
        if code is None:
            raise NotFound("meter", meter_id)
        if await find_sts_meter(conn, meter_id) is not None:
            raise Conflict("meter", "it has an STS keypad recorded already")
        number = drn if drn is not None else "".join(ch for ch in str(code) if ch.isdigit())[-11:]
        if len(number) != 11 or not number.isdigit():
            raise InvalidField("drn", "11 digits")
        values = {
            "meter_id": meter_id,
            "iin": iin,
            "drn": number,
            "supply_group_code": supply_group_code,
            "tariff_index": tariff_index,
            "key_revision": key_revision,
            "key_type": key_type,
            "key_expiry": 255,
            "base_date_year": base_date_year,
            "key_change_state": "none",
            "created_at": now,
            "updated_at": now,
        }
        await conn.execute(insert(sts_meters).values(**values))
        await audit.record(
            conn,
            actor,
            "sts.keypad_register",
            now,
            target=f"meter:{meter_id}",
            after={k: v for k, v in values.items() if k not in ("created_at", "updated_at")},
        )
        found = await find_sts_meter(conn, meter_id)
    assert found is not None
    return found


async def _command_gone(
    conn: AsyncConnection, command_id: int | None, now: datetime, actor: Actor, policy: TokenPolicy
) -> int | None:
    """Make sure the SMS of the credit will not (or may no longer be expected to) arrive; returns the id of
    a command cancelled here. Raises Conflict while the SMS is still on its way and not yet stuck."""
    if command_id is None:
        return None
    row = (await conn.execute(select(commands.c.state, commands.c.created_at).where(commands.c.id == command_id))).one()
    state = CommandState(row.state)
    if state is CommandState.PROCESSED:
        raise Conflict("top-up", "the meter has acknowledged this credit's SMS: it needs no token")
    if state.is_final:
        return None
    if state is CommandState.SENDING:
        try:
            await outbox.cancel_command(conn, command_id, now, by=str(actor), reason="delivered by STS token")
            return command_id
        except CannotCancel:
            pass  # a dispatcher holds it right now: treat it as left
    if now - row.created_at < policy.stuck_after:
        raise Conflict("top-up", "its SMS is still on its way; a token can be issued once it is stuck")
    return None


async def issue_credit_token(
    uow: UnitOfWork,
    actor: Actor,
    topup_id: int,
    now: datetime,
    *,
    generator: TokenGenerator,
    policy: TokenPolicy = TokenPolicy(),
    random_nibble: RandomNibble = _random_nibble,
) -> IssuedToken:
    """The token for a top-up's credit (see the module's rules). Raises NotFound, Conflict, InvalidField."""
    async with uow.begin() as conn:
        t = L.topups.c
        row = (await conn.execute(select(L.topups).where(t.id == topup_id).with_for_update())).first()
        if row is None:
            raise NotFound("top-up", topup_id)
        currency = row.currency
        if row.sts_token is not None:
            return IssuedToken(
                row.id, row.meter_id, row.sts_token, Money(int(row.vend_minor), currency), Money.zero(currency),
                None, duplicate=True,
            )  # fmt: skip
        if row.meter_id is None or row.state not in ("queued", "failed") or int(row.vend_minor) <= 0:
            raise Conflict("top-up", f"only an undelivered credit gets a token (this one is {row.state})")
        meter = await find_sts_meter(conn, int(row.meter_id))
        if meter is None:
            raise Conflict("top-up", "the meter has no STS keypad")
        if meter.base_date_year == 1993 and now >= ROLLOVER_AT:
            raise Conflict("meter", "its 1993 base date has run out: issue the key change pair first")
        cancelled = await _command_gone(conn, row.command_id, now, actor, policy)
        vend = int(row.vend_minor)
        carried = sts.largest_amount_at_most(vend)
        try:
            token = await generator.credit_token(
                conn, meter, sts.CreditKind.ELECTRICITY_CURRENCY, carried, now, random_nibble()
            )
        except sts.StsError as exc:
            raise InvalidField("token", exc.reason) from None
        remainder = Money(vend - carried, currency)
        if remainder.minor:
            await ledger.post(
                conn,
                int(row.account_id),
                [
                    Posting(
                        EntryType.CREDIT_SENT,
                        Book.WALLET,
                        remainder,
                        f"sts:remainder:{row.id}",
                        memo="what the STS token cannot carry stays in the wallet",
                    )
                ],
                created_by=str(actor),
                now=now,
            )
        await conn.execute(
            update(L.topups)
            .where(t.id == row.id)
            .values(
                state="delivered",
                delivered_by="token",
                delivered_at=now,
                sts_token=token,
                token_issued_at=now,
                vend_minor=carried,
                updated_at=now,
            )
        )
        await audit.record(
            conn,
            actor,
            "sts.token_issue",
            now,
            target=f"topup:{row.id}",
            before={"state": row.state, "command_id": row.command_id},
            after={
                "state": "delivered",
                "delivered_by": "token",
                "amount_minor": carried,
                "remainder_minor": remainder.minor,
                "cancelled_command_id": cancelled,
                "meter_id": row.meter_id,
            },
        )
    return IssuedToken(row.id, int(row.meter_id), token, Money(carried, currency), remainder, cancelled, False)


async def on_sms_credit_acknowledged(conn: AsyncConnection, topup_row: object, meter_id: int, now: datetime) -> None:
    """A 1:1 for a credit already delivered by token: recorded, alarmed, never credited again."""
    topup_id = getattr(topup_row, "id")  # noqa: B009
    await conn.execute(update(L.topups).where(L.topups.c.id == topup_id).values(sms_acked_at=now, updated_at=now))
    await conn.execute(
        insert(alarms).values(
            meter_id=meter_id,
            command_id=getattr(topup_row, "command_id"),  # noqa: B009
            kind="double_delivery",
            severity="warning",
            raised_at=now,
            detail=f"top-up {topup_id} was delivered by STS token and its SMS credit was applied too",
        )
    )


async def issue_key_change(
    uow: UnitOfWork, actor: Actor, meter_id: int, now: datetime, *, generator: TokenGenerator, rollover: bool = True
) -> tuple[str, ...]:
    """The key change tokens to KRN+1 (with `rollover`, the meter moves to the 2014 base date): a pair, or
    four for a meter on a 16-byte (DKGA04, MISTY1) key. Issuing it again before the meter accepted it gives the
    same tokens. Raises NotFound, Conflict."""
    async with uow.begin() as conn:
        meter = await find_sts_meter(conn, meter_id)
        if meter is None:
            raise NotFound("STS meter", meter_id)
        if meter.key_change_state == "issued" and meter.key_change_tokens:
            return tuple(t for t in meter.key_change_tokens.split() if t != "R")
        if rollover and meter.base_date_year != 1993:
            raise Conflict("meter", "it has rolled over to the 2014 base date already")
        new_revision = meter.key_revision + 1
        if new_revision > 9:
            raise Conflict("meter", "the key revision cannot go past 9")
        try:
            tokens = await generator.key_change_tokens(conn, meter, new_revision, rollover=rollover)
        except sts.StsError as exc:
            raise InvalidField("key change", exc.reason) from None
        await conn.execute(
            update(sts_meters)
            .where(sts_meters.c.meter_id == meter_id)
            .values(
                key_change_state="issued",
                key_change_revision=new_revision,
                key_change_tokens=" ".join(tokens) + (" R" if rollover else ""),
                key_change_issued_at=now,
                updated_at=now,
            )
        )
        await audit.record(
            conn,
            actor,
            "sts.key_change_issue",
            now,
            target=f"meter:{meter_id}",
            before={"key_revision": meter.key_revision, "base_date_year": meter.base_date_year},
            after={"key_revision": new_revision, "rollover": rollover, "tokens": len(tokens)},
        )
    return tokens


async def confirm_key_change(uow: UnitOfWork, actor: Actor, meter_id: int, now: datetime) -> StsMeter:
    """The meter took the key change (its display said so): the new KRN (and base date) are in force."""
    async with uow.begin() as conn:
        meter = await find_sts_meter(conn, meter_id)
        if meter is None:
            raise NotFound("STS meter", meter_id)
        if meter.key_change_state != "issued" or meter.key_change_revision is None:
            raise Conflict("meter", "no key change is waiting for the meter")
        rollover = (meter.key_change_tokens or "").endswith(" R")
        year = 2014 if rollover else meter.base_date_year
        await conn.execute(
            update(sts_meters)
            .where(sts_meters.c.meter_id == meter_id)
            .values(
                key_revision=meter.key_change_revision,
                base_date_year=year,
                key_change_state="accepted",
                key_change_accepted_at=now,
                updated_at=now,
            )
        )
        await audit.record(
            conn,
            actor,
            "sts.key_change_accept",
            now,
            target=f"meter:{meter_id}",
            before={"key_revision": meter.key_revision, "base_date_year": meter.base_date_year},
            after={"key_revision": meter.key_change_revision, "base_date_year": year},
        )
        row = (await conn.execute(select(sts_meters).where(sts_meters.c.meter_id == meter_id))).one()
    return sts_meter_of(row)
