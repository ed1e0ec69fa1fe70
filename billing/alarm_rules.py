"""Alarm rules and what they do: managing the rules (each change audited with before and after), and
`notify_alarms`, which applies them to alarms not yet notified: it queues e-mail and SMS notices to the
rules' recipients and the operators of their role (through the notices outbox, sent by the notices job),
and runs the automatic action a rule names (relay off) when the utility enables it, within friendly hours;
outside them the action waits as `pending` until friendly hours come, unless the alarm is acknowledged first.
The choices are `billing.rules.alarms`; this module reads and writes the rows around them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import places
from billing.errors import InvalidField, NotFound
from billing.notices import queue_rows
from billing.ports import OperatorBook
from billing.rules.alarms import (
    ActionDecision,
    AlarmRule,
    AutoAction,
    Channel,
    Contact,
    Severity,
    alarm_text,
    check_rule,
    decide_action,
    deliveries,
    matching_rules,
)
from billing.rules.arrears import FriendlyCalendar
from gateway.errors import OutboxError
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_command
from store import audit
from store.audit import SYSTEM, Actor
from store.schema.commands import alarms
from store.schema.notices import alarm_rules
from store.schema.registry import meters
from store.uow import UnitOfWork

log = logging.getLogger("smsmeter.billing.alarms")

R = alarm_rules.c


@dataclass(frozen=True, slots=True)
class RuleFields:
    name: str
    kind: str
    min_severity: str
    email: bool = True
    sms: bool = False
    role: str | None = None
    recipients: Sequence[str] = ()
    action: str = AutoAction.NONE.value
    enabled: bool = True


def _row(rule: Any) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "kind": rule.kind,
        "min_severity": rule.min_severity,
        "email": bool(rule.email),
        "sms": bool(rule.sms),
        "role": rule.role,
        "recipients": list(rule.recipients or []),
        "action": rule.action,
        "enabled": bool(rule.enabled),
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def _audited(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k not in ("id", "created_at", "updated_at")}


async def list_rules(conn: AsyncConnection) -> list[dict[str, Any]]:
    return [_row(r) for r in await conn.execute(select(alarm_rules).order_by(R.id))]


async def get_rule(conn: AsyncConnection, rule_id: int) -> dict[str, Any]:
    row = (await conn.execute(select(alarm_rules).where(R.id == rule_id))).first()
    if row is None:
        raise NotFound("alarm rule", rule_id)
    return _row(row)


async def _values(conn: AsyncConnection, fields: RuleFields, operators: OperatorBook) -> dict[str, Any]:
    name, severity, recipients = check_rule(
        name=fields.name,
        kind=fields.kind.strip().lower(),
        min_severity=fields.min_severity,
        email=fields.email,
        sms=fields.sms,
        role=fields.role,
        recipients=fields.recipients,
    )
    try:
        action = AutoAction(fields.action)
    except ValueError:
        raise InvalidField("action", "none or relay_off") from None
    if fields.role and not await operators.has_role(conn, fields.role):
        raise InvalidField("role", f"no role {fields.role!r}")
    return {
        "name": name,
        "kind": fields.kind.strip().lower(),
        "min_severity": severity.value,
        "email": int(fields.email),
        "sms": int(fields.sms),
        "role": fields.role or None,
        "recipients": list(recipients),
        "action": action.value,
        "enabled": int(fields.enabled),
    }


async def create_rule(
    uow: UnitOfWork, actor: Actor, fields: RuleFields, now: datetime, *, operators: OperatorBook
) -> dict[str, Any]:
    """Raises InvalidField (a role `operators` does not know among them)."""
    async with uow.begin() as conn:
        values = await _values(conn, fields, operators)
        rule_id = await conn.scalar(
            insert(alarm_rules).values(**values, created_at=now, updated_at=now).returning(R.id)
        )
        rule = await get_rule(conn, int(rule_id))
        await audit.record(conn, actor, "alarm_rule.create", now, target=f"alarm_rule:{rule_id}", after=_audited(rule))
    return rule


async def update_rule(
    uow: UnitOfWork, actor: Actor, rule_id: int, fields: RuleFields, now: datetime, *, operators: OperatorBook
) -> dict[str, Any]:
    """Raises NotFound, InvalidField."""
    async with uow.begin() as conn:
        before = await get_rule(conn, rule_id)
        values = await _values(conn, fields, operators)
        await conn.execute(update(alarm_rules).where(R.id == rule_id).values(**values, updated_at=now))
        rule = await get_rule(conn, rule_id)
        await audit.record(
            conn,
            actor,
            "alarm_rule.update",
            now,
            target=f"alarm_rule:{rule_id}",
            before=_audited(before),
            after=_audited(rule),
        )
    return rule


async def delete_rule(uow: UnitOfWork, actor: Actor, rule_id: int, now: datetime) -> None:
    """Raises NotFound."""
    async with uow.begin() as conn:
        before = await get_rule(conn, rule_id)
        await conn.execute(delete(alarm_rules).where(R.id == rule_id))
        await audit.record(
            conn, actor, "alarm_rule.delete", now, target=f"alarm_rule:{rule_id}", before=_audited(before)
        )


# --- applying the rules -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmReport:
    alarms: int = 0  # alarms the rules were applied to
    notices: int = 0  # notices queued
    actions: int = 0  # automatic actions sent
    pending: int = 0  # automatic actions waiting for friendly hours


def _rule(row: Any) -> AlarmRule:
    return AlarmRule(
        id=row.id,
        name=row.name,
        kind=row.kind,
        min_severity=Severity(row.min_severity),
        email=bool(row.email),
        sms=bool(row.sms),
        role=row.role,
        recipients=tuple(row.recipients or ()),
        action=AutoAction(row.action),
        enabled=bool(row.enabled),
    )


async def notify_alarms(
    uow: UnitOfWork,
    now: datetime,
    *,
    keys: KeyRing,
    calendar: FriendlyCalendar,
    actions_enabled: bool,
    utility: str,
    operators: OperatorBook,
    batch: int = 200,
) -> AlarmReport:
    """Apply the rules to alarms not yet notified, and retry automatic actions waiting for friendly hours.
    One transaction per batch: the notices, the relay command and its audit row commit with `notified_at`."""
    a = alarms.c
    totals = AlarmReport()
    last = 0
    while True:
        async with uow.begin() as conn:
            # two index lookups (not one OR): alarms not yet notified, and actions waiting for friendly hours
            due: set[int] = set()
            for condition in (a.notified_at.is_(None), a.action_state == "pending"):
                due.update(
                    (await conn.scalars(select(a.id).where(a.id > last, condition).order_by(a.id).limit(batch))).all()
                )
            ids = sorted(due)[:batch]
            if not ids:
                return totals
            last = ids[-1]
            rows = (
                await conn.execute(
                    select(alarms, meters.c.code.label("meter_code"))
                    .outerjoin(meters, meters.c.id == a.meter_id)
                    .where(a.id.in_(ids), or_(a.notified_at.is_(None), a.action_state == "pending"))
                    .order_by(a.id)
                    .with_for_update(skip_locked=True, of=alarms)  # two processes never apply one alarm twice
                )
            ).all()
            rules = [_rule(r) for r in await conn.execute(select(alarm_rules).order_by(R.id))]
            contacts = await operators.contacts(conn)
            holidays = await places.holidays(conn)
            today = FriendlyCalendar(
                calendar.tz,
                calendar.night_start_min,
                calendar.night_end_min,
                calendar.weekend_days,
                calendar.holidays | holidays,
            )
            report = AlarmReport()
            for row in rows:
                report = _add(
                    report, await _apply(conn, row, rules, contacts, today, now, keys, actions_enabled, utility)
                )
        totals = _add(totals, report)


def _add(x: AlarmReport, y: AlarmReport) -> AlarmReport:
    return AlarmReport(x.alarms + y.alarms, x.notices + y.notices, x.actions + y.actions, x.pending + y.pending)


async def _apply(
    conn: AsyncConnection,
    row: Any,
    rules: list[AlarmRule],
    contacts: list[Contact],
    calendar: FriendlyCalendar,
    now: datetime,
    keys: KeyRing,
    actions_enabled: bool,
    utility: str,
) -> AlarmReport:
    a = alarms.c
    matched = matching_rules(rules, row.kind, row.severity)
    queued = 0
    values: dict[str, Any] = {}
    if row.notified_at is None:
        subject, body = alarm_text(
            utility=utility, kind=row.kind, severity=row.severity, meter=row.meter_code, detail=row.detail
        )
        notice_rows = [
            {
                "subscriber_id": None,
                "alarm_id": row.id,
                "channel": d.channel.value,
                "stage": "alarm",
                "cause_key": f"alarm:{row.id}:{d.channel.value}:{d.address}"[:200],
                "status": "queued",
                "subject": subject,
                "body": body if d.channel is Channel.EMAIL else body[:160],
                "created_at": now,
                "recipient": d.address,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for d in deliveries(matched, contacts)
        ]
        await queue_rows(conn, notice_rows)
        queued = len(notice_rows)
        values["notified_at"] = now
    decision = decide_action(matched, meter_id=row.meter_id, enabled=actions_enabled, calendar=calendar, now=now)
    if row.action_state == "pending" and row.acknowledged_at is not None:
        values.update(action_state="skipped", action_detail="acknowledged before friendly hours")
    elif decision.action is AutoAction.NONE:
        if row.action_state == "pending":  # the rule asking for it was changed meanwhile
            values.update(action_state="skipped", action_detail="no rule asks for an action any more")
    elif decision.run_now:
        try:
            command_id = await _relay_off(conn, keys, row, decision, now)
        except OutboxError as exc:  # the meter has no key, or is gone: said on the alarm, nothing sent
            values.update(action_state="skipped", action_detail=f"relay_off not sent: {exc}"[:200])
        else:
            values.update(action_state="sent", action_detail=f"relay_off command {command_id}")
    elif decision.pending:
        values.update(action_state="pending", action_detail=f"relay_off waits: {decision.reason}")
    elif row.action_state != "skipped":
        values.update(action_state="skipped", action_detail=f"relay_off not sent: {decision.reason}"[:200])
    if values:
        await conn.execute(update(alarms).where(a.id == row.id).values(**values))
    return AlarmReport(
        alarms=1 if row.notified_at is None else 0,
        notices=queued,
        actions=1 if values.get("action_state") == "sent" else 0,
        pending=1 if values.get("action_state", row.action_state) == "pending" else 0,
    )


async def _relay_off(conn: AsyncConnection, keys: KeyRing, row: Any, decision: ActionDecision, now: datetime) -> int:
    message = mp.RelayOff(mp.RelayReason.TAMPER)
    request = CommandRequest(row.meter_id, message, str(SYSTEM), idempotency_key=f"alarm:{row.id}:relay_off")
    command_id = await enqueue_command(conn, keys, request, now)
    await audit.record(
        conn,
        SYSTEM,
        "alarm.action",
        now,
        target=f"meter:{row.meter_code}",
        before={"alarm_id": row.id, "kind": row.kind, "action_state": row.action_state},
        after={"action": decision.action.value, "command_id": command_id, "reason": "tamper"},
    )
    log.warning("alarm %s (%s): relay off sent to meter %s, command %s", row.id, row.kind, row.meter_code, command_id)
    return command_id
