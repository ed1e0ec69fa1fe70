"""The arrears sweep: penalties, escalation notices, disconnects in friendly hours only, reconnects once
the debt is cleared, and emergency credit. The decisions are `billing.rules.arrears.decide`; this module
reads the state in keyset-paginated batches of accounts (one transaction per batch, so memory stays flat
and progress is kept), and writes each batch's penalties, notices, state and commands in bulk.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import ledger, meter_registry, places, registry
from billing.errors import InvalidField
from billing.notices import Recipient, notice_rows, queue_notice, queue_rows
from billing.rules.arrears import (
    ArrearsPolicy,
    ArrearsState,
    FriendlyCalendar,
    Stage,
    decide,
    emergency_credit_allowed,
)
from billing.rules.ledger import plan_emergency_credit
from billing.rules.money import Money
from billing.rules.notices import NoticeKind
from billing.transfers import next_transfer_id
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_command, enqueue_commands
from store import audit
from store.audit import Actor
from store.schema import ledger as L  # noqa: N812
from store.schema import registry as R  # noqa: N812
from store.sql import insert_ignoring_duplicates, insert_or_update
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

log = logging.getLogger("smsmeter.billing.arrears")

_NOTICE = {Stage.REMINDER: NoticeKind.REMINDER, Stage.FINAL: NoticeKind.FINAL, Stage.DISCONNECT: NoticeKind.DISCONNECT}


def _upsert_arrears(conn: AsyncConnection, rows: list[dict[str, Any]]) -> Any:
    columns = [c for c in rows[0] if c != "account_id"]
    return insert_or_update(L.arrears, ["account_id"], columns, conn), rows


def _episode(since: datetime) -> str:
    return str(int(since.timestamp()))


@dataclass
class SweepReport:
    accounts: int = 0  # accounts looked at (with debt or an open episode)
    batches: int = 0
    penalties: int = 0
    notices: int = 0
    disconnects: int = 0
    reconnects: int = 0
    deferred: dict[str, int] = field(default_factory=dict)
    cleared: int = 0
    seconds: float = 0.0


def _state(row: Any, currency: str) -> ArrearsState:
    debt = int(row.debt or 0)
    return ArrearsState(
        owed=Money(max(0, -debt), currency),
        overdue_since=row.overdue_since,
        stage=Stage(row.stage or "none"),
        penalties_applied=int(row.penalties_applied or 0),
        disconnected=row.disconnected_at is not None,
        emergency_until=row.emergency_until,
    )


async def _batch(
    conn: AsyncConnection,
    lo: int,
    hi: int,
    policy: ArrearsPolicy,
    calendar: FriendlyCalendar,
    now: datetime,
    keys: KeyRing,
    utility: str,
    report: SweepReport,
) -> None:
    e, a, s, ar = L.ledger_entries.c, L.accounts.c, R.subscribers.c, L.arrears.c
    debt = (
        select(e.account_id, func.sum(e.amount_minor).label("debt"))
        .where(e.book == "debt", e.account_id >= lo, e.account_id <= hi)
        .group_by(e.account_id)
        .cte("debt")
    )
    # Only the few accounts with a debt or an open episode are joined to their subscribers (by key).
    candidates = (
        select(debt.c.account_id.label("account_id"))
        .where(debt.c.debt < 0)
        .union(
            select(ar.account_id).where(
                ar.account_id >= lo,
                ar.account_id <= hi,
                or_(ar.overdue_since.is_not(None), ar.disconnected_at.is_not(None)),
            )
        )
        .cte("candidates")
    )
    rows = (
        await conn.execute(
            select(
                a.id.label("account_id"),
                a.currency,
                s.id.label("subscriber_id"),
                s.code,
                s.language,
                s.phone,
                s.email,
                s.status,
                debt.c.debt,
                ar.overdue_since,
                ar.stage,
                ar.penalties_applied,
                ar.disconnected_at,
                ar.emergency_until,
                ar.deferred,
                ar.stage_at,
                ar.disconnect_command_id,
            )
            .select_from(
                candidates.join(L.accounts, a.id == candidates.c.account_id)
                .join(R.subscribers, s.id == a.subscriber_id)
                .outerjoin(debt, debt.c.account_id == a.id)
                .outerjoin(L.arrears, and_(ar.account_id == a.id, ar.account_id >= lo, ar.account_id <= hi))
            )
            # the range again, so that every table is read by key range, never scanned whole
            .where(s.status != "closed", a.id >= lo, a.id <= hi)
        )
    ).all()
    report.accounts += len(rows)
    penalties: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    notices: list[dict[str, Any]] = []
    relay: list[tuple[Any, str, Any]] = []  # (row, "off"|"on", episode)
    for row in rows:
        state = _state(row, row.currency)
        d = decide(policy, calendar, state, now)
        if not d.changed(state) and d.deferred == row.deferred:
            continue
        episode = _episode(d.overdue_since or state.overdue_since or now)
        for n, amount in d.penalties:
            penalties.append(
                {
                    "account_id": row.account_id,
                    "entry_type": "penalty",
                    "book": "debt",
                    "amount_minor": -amount.minor,
                    "idempotency_key": f"penalty:{row.account_id}:{episode}:{n}",
                    "payment_id": None,
                    "command_id": None,
                    "memo": f"penalty for overdue period {n}",
                    "created_at": now,
                    "created_by": "system:arrears",
                }
            )
        if d.notice is not None:
            recipient = Recipient(row.subscriber_id, row.code, row.language, row.phone, row.email)
            notices += notice_rows(
                recipient,
                _NOTICE[d.notice],
                f"arrears:{row.account_id}:{episode}:{d.notice.value}",
                utility=utility,
                amount=state.owed.format(),
                now=now,
            )
        if d.disconnect:
            relay.append((row, "off", episode))
        if d.reconnect:
            relay.append((row, "on", _episode(state.overdue_since or now)))
            recipient = Recipient(row.subscriber_id, row.code, row.language, row.phone, row.email)
            notices += notice_rows(
                recipient,
                NoticeKind.RECONNECT,
                f"reconnect:{row.account_id}:{_episode(state.overdue_since or now)}",
                utility=utility,
                amount="",
                now=now,
            )
            report.reconnects += 1
        if d.overdue_since is None:
            report.cleared += 1
        if d.deferred:
            report.deferred[d.deferred] = report.deferred.get(d.deferred, 0) + 1
        states.append(
            {
                "account_id": row.account_id,
                "overdue_since": d.overdue_since,
                "stage": d.stage.value,
                "stage_at": now if d.stage.value != (row.stage or "none") else row.stage_at,
                "penalties_applied": d.penalties_applied(state),
                "disconnected_at": (now if d.disconnect else row.disconnected_at) if not d.reconnect else None,
                "disconnect_command_id": None if d.reconnect else row.disconnect_command_id,
                "emergency_until": row.emergency_until if d.overdue_since is not None else None,
                "deferred": d.deferred,
                "updated_at": now,
            }
        )
    if penalties:
        await conn.execute(
            insert_ignoring_duplicates(L.ledger_entries, ["idempotency_key"], conn),
            penalties,
        )
        report.penalties += len(penalties)
    if relay:
        subscriber_ids = list({r.subscriber_id for r, _, _ in relay})
        m = R.meters.c
        meter_rows = await conn.execute(
            select(m.subscriber_id, func.min(m.id))
            .where(m.subscriber_id.in_(subscriber_ids), m.status == "active", m.is_balance_meter == 0)
            .group_by(m.subscriber_id)
        )
        meter_of = {sid: mid for sid, mid in meter_rows}
        requests = []
        for row, direction, episode in relay:
            meter_id = meter_of.get(row.subscriber_id)
            if meter_id is None:
                continue
            message = mp.RelayOff(mp.RelayReason.ARREARS) if direction == "off" else mp.RelayOn(mp.RelayReason.ARREARS)
            key = f"{'disconnect' if direction == 'off' else 'reconnect'}:{row.account_id}:{episode}"
            requests.append((row, CommandRequest(meter_id, message, "system:arrears", idempotency_key=key)))
        ids_ = await enqueue_commands(conn, keys, [r for _, r in requests], now)
        command_of = {
            row.account_id: cid
            for (row, req), cid in zip(requests, ids_, strict=True)
            if isinstance(req.message, mp.RelayOff)
        }
        wanted_off = {row.account_id for row, direction, _ in relay if direction == "off"}
        for st in states:
            if st["account_id"] in command_of:
                st["disconnect_command_id"] = command_of[st["account_id"]]
            elif st["account_id"] in wanted_off:  # no active meter to cut off: not disconnected
                st["disconnected_at"] = None
        report.disconnects += len(command_of)
    if states:
        stmt, values = _upsert_arrears(conn, states)
        await conn.execute(stmt, values)
    if notices:
        await queue_rows(conn, notices)
        report.notices += len(notices)


async def run_arrears_sweep(
    uow: UnitOfWork,
    policy: ArrearsPolicy,
    calendar: FriendlyCalendar,
    now: datetime,
    *,
    keys: KeyRing,
    utility: str,
    batch_size: int = 20000,
    progress: JobProgress = UNWATCHED,
) -> SweepReport:
    """Sweep every account once. Safe to re-run at any time: penalties, notices and commands are keyed by
    (account, episode, period/stage), so a second run at the same moment changes nothing."""
    started = time.perf_counter()
    report = SweepReport()
    holidays = None
    last = 0
    while not progress.stop_requested:  # a stopped sweep is re-run whole next time: it is idempotent
        async with uow.begin() as conn:
            if holidays is None:
                holidays = await places.holidays(conn)
                if holidays:
                    calendar = FriendlyCalendar(
                        calendar.tz,
                        calendar.night_start_min,
                        calendar.night_end_min,
                        calendar.weekend_days,
                        calendar.holidays | holidays,
                    )
            page = select(L.accounts.c.id).where(L.accounts.c.id > last).order_by(L.accounts.c.id).limit(batch_size)
            hi = await conn.scalar(select(func.max(page.subquery().c.id)))
            if hi is None:
                break
            await _batch(conn, last + 1, int(hi), policy, calendar, now, keys, utility, report)
        report.batches += 1
        progress.advanced(int(hi) - last)
        last = int(hi)
    report.seconds = time.perf_counter() - started
    log.info(
        "arrears sweep: %s accounts in arrears, %s penalties, %s notices, %s disconnects, %s reconnects, deferred %s "
        "(%.1f s)",
        report.accounts,
        report.penalties,
        report.notices,
        report.disconnects,
        report.reconnects,
        report.deferred,
        report.seconds,
    )
    return report


async def reconnect_if_cleared(
    conn: AsyncConnection,
    keys: KeyRing,
    account_id: int,
    meter_id: int,
    now: datetime,
    *,
    min_debt_minor: int,
    depends_on_id: int | None,
    created_by: str,
    utility: str = "",
) -> int | None:
    """After a payment: if the meter was cut off for arrears and the debt is now below the minimum, queue
    the reconnect (after the credit command it depends on) and close the episode. Returns the command id."""
    ar = L.arrears.c
    row = (await conn.execute(select(L.arrears).where(ar.account_id == account_id))).first()
    if row is None or row.disconnected_at is None:
        return None
    balances = await ledger.balances(conn, account_id)
    if balances.owed.minor >= max(min_debt_minor, 1):
        return None
    episode = _episode(row.overdue_since or row.disconnected_at)
    command_id = await enqueue_command(
        conn,
        keys,
        CommandRequest(
            meter_id,
            mp.RelayOn(mp.RelayReason.ARREARS),
            created_by,
            idempotency_key=f"reconnect:{account_id}:{episode}",
            depends_on_id=depends_on_id,
        ),
        now,
    )
    await conn.execute(
        update(L.arrears)
        .where(ar.account_id == account_id)
        .values(
            overdue_since=None,
            stage="none",
            stage_at=now,
            penalties_applied=0,
            disconnected_at=None,
            disconnect_command_id=None,
            emergency_until=None,
            deferred=None,
            updated_at=now,
        )
    )
    sub = await conn.execute(
        select(
            R.subscribers.c.id,
            R.subscribers.c.code,
            R.subscribers.c.language,
            R.subscribers.c.phone,
            R.subscribers.c.email,
        )
        .join(L.accounts, L.accounts.c.subscriber_id == R.subscribers.c.id)
        .where(L.accounts.c.id == account_id)
    )
    s = sub.one()
    await queue_notice(
        conn,
        Recipient(s.id, s.code, s.language, s.phone, s.email),
        NoticeKind.RECONNECT,
        f"reconnect:{account_id}:{episode}",
        utility=utility,
        amount="",
        now=now,
    )
    return command_id


async def grant_emergency_credit(
    uow: UnitOfWork,
    actor: Actor,
    subscriber_id: int,
    policy: ArrearsPolicy,
    now: datetime,
    *,
    keys: KeyRing,
) -> int:
    """Emergency credit, once per arrears episode: the policy's amount is sent to the meter on loan (booked
    as debt, repaid by debt recovery) and a due disconnect waits `emergency_grace_days`. Returns the
    credit command id. Raises InvalidField when the policy has none or it was used in this episode."""
    from datetime import timedelta

    async with uow.begin() as conn:
        subscriber = await registry.get_subscriber(conn, subscriber_id)
        currency = await ledger.account_currency(conn, subscriber.account_id, lock=True)
        row = (await conn.execute(select(L.arrears).where(L.arrears.c.account_id == subscriber.account_id))).first()
        balances = await ledger.balances(conn, subscriber.account_id)
        state = ArrearsState(
            balances.owed,
            row.overdue_since if row else None,
            Stage(row.stage) if row else Stage.NONE,
            emergency_until=row.emergency_until if row else None,
        )
        if not emergency_credit_allowed(policy, state, now):
            raise InvalidField("emergency credit", "not available (none in the policy, or used in this episode)")
        meter = await meter_registry.active_meter(conn, subscriber_id)
        if meter is None:
            raise InvalidField("emergency credit", "the subscriber has no active meter")
        amount = Money(policy.emergency_credit_minor, currency)
        key = f"emergency:{subscriber.account_id}:{int(now.timestamp())}"
        transfer_id = await next_transfer_id(conn, meter.id)
        command_id = await enqueue_command(
            conn,
            keys,
            CommandRequest(
                meter.id, mp.TopUp(transfer_id=transfer_id, amount_minor=amount.minor), str(actor), idempotency_key=key
            ),
            now,
        )
        await ledger.post(
            conn,
            subscriber.account_id,
            plan_emergency_credit(amount, key=key),
            created_by=str(actor),
            now=now,
            command_id=command_id,
        )
        until = now + timedelta(days=policy.emergency_grace_days)
        stmt, values = _upsert_arrears(
            conn,
            [
                {
                    "account_id": subscriber.account_id,
                    "overdue_since": state.overdue_since or now,
                    "stage": state.stage.value,
                    "penalties_applied": row.penalties_applied if row else 0,
                    "emergency_until": until,
                    "updated_at": now,
                }
            ],
        )
        await conn.execute(stmt, values)
        await audit.record(
            conn,
            actor,
            "credit.emergency",
            now,
            target=f"subscriber:{subscriber.code}",
            before={"emergency_until": state.emergency_until.isoformat() if state.emergency_until else None},
            after={"amount_minor": amount.minor, "until": until.isoformat(), "command_id": command_id},
        )
        return command_id


async def arrears_of(conn: AsyncConnection, account_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(L.arrears).where(L.arrears.c.account_id == account_id))).first()
    return None if row is None else dict(row._mapping)
