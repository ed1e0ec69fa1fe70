"""Remote control: relay off / on with a reason, power limit, time sync, read request, the meter's
settings (`configure`: low-credit threshold, emergency credit, friendly hours) — for one meter or
a group (transformer, street, building). One meter: one command in one transaction with its audit row.
A group: a bulk job with progress (`billing.bulk`). `send_command` sends one of the messages an
operator or an integration may send directly (as the API takes them, JSON or the protocol's XML)."""

from __future__ import annotations

import calendar
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from billing import bulk, meter_registry
from billing.errors import InvalidField
from billing.rules.arrears import FriendlyCalendar
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, command_kind, enqueue_command, message_payload
from store import audit
from store.audit import SYSTEM, Actor
from store.schema.commands import commands
from store.schema.registry import meters
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress


class Action(enum.StrEnum):
    RELAY_OFF = "relay_off"
    RELAY_ON = "relay_on"
    POWER_LIMIT = "power_limit"
    TIME_SYNC = "time_sync"
    READ = "read"
    CONFIGURE = "configure"  # the meter's settings: low-credit threshold, emergency credit, friendly hours


@dataclass(frozen=True, slots=True)
class Control:
    action: Action
    reason: mp.RelayReason = mp.RelayReason.OPERATOR
    note: str = ""  # the operator's words, kept in the audit log
    limit_w: int = 0
    read_items: mp.ReadItems = mp.ReadItems.REGISTERS | mp.ReadItems.BALANCE
    settings: mp.Configure | None = None  # with Action.CONFIGURE (`meter_settings` makes the utility's)
    profile_since_s: int = 0  # with Action.READ of the load profile: the first interval wanted (epoch s)

    def message(self, now: datetime) -> mp.Command:
        if self.action is Action.RELAY_OFF:
            return mp.RelayOff(self.reason)
        if self.action is Action.RELAY_ON:
            return mp.RelayOn(self.reason)
        if self.action is Action.POWER_LIMIT:
            if self.limit_w < 0:
                raise InvalidField("limit_w", "0 (no limit) or more")
            return mp.SetPowerLimit(self.limit_w)
        if self.action is Action.TIME_SYNC:
            return mp.TimeSync(calendar.timegm(now.utctimetuple()))
        if self.action is Action.CONFIGURE:
            if self.settings is None:
                raise InvalidField("settings", "the meter's settings are required")
            return self.settings
        return mp.ReadRequest(self.read_items, self.profile_since_s)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"action": self.action.value, "note": self.note}
        if self.action in (Action.RELAY_OFF, Action.RELAY_ON):
            out["reason"] = self.reason.name.lower()
        if self.action is Action.POWER_LIMIT:
            out["limit_w"] = self.limit_w
        if self.action is Action.CONFIGURE and self.settings is not None:
            out.update(message_payload(self.settings))
        return out


def meter_settings(
    *,
    low_credit_minor: int,
    emergency_credit_minor: int,
    friendly: FriendlyCalendar,
    now: datetime,
    report_interval_s: int = 0,
) -> mp.Configure:
    """The Configure message for the utility's policy: the low-credit threshold, the emergency credit, and
    the friendly hours of its calendar (no disconnection from night start to night end, nor on weekend
    days), in the meter's local time (the utility's UTC offset at `now`). Raises InvalidField on a value
    the protocol cannot carry."""
    offset = now.astimezone(friendly.tz).utcoffset()
    days = sum(1 << d for d in friendly.weekend_days)
    try:
        return mp.Configure(
            low_credit_minor=low_credit_minor,
            emergency_credit_minor=emergency_credit_minor,
            friendly_start_min=friendly.night_start_min,
            friendly_end_min=friendly.night_end_min,
            friendly_days=days,
            utc_offset_min=int(offset.total_seconds() // 60) if offset is not None else 0,
            report_interval_s=report_interval_s,
        )
    except mp.ProtocolError as exc:
        raise InvalidField("settings", str(exc)) from None


@dataclass(frozen=True, slots=True)
class Group:
    transformer_id: int | None = None
    street: tuple[str, str, str] | None = None
    building: tuple[str, str, str, str] | None = None
    meter_ids: Sequence[int] | None = None

    def describe(self) -> str:
        if self.transformer_id is not None:
            return f"transformer {self.transformer_id}"
        if self.building is not None:
            return "building " + "".join(self.building)
        if self.street is not None:
            return "street " + "".join(self.street)
        return f"{len(self.meter_ids or ())} meters"


def _check(control: Control) -> None:
    if (
        control.action in (Action.RELAY_OFF, Action.RELAY_ON)
        and not control.note.strip()
        and control.reason is mp.RelayReason.OPERATOR
    ):
        raise InvalidField("note", "a relay command by an operator needs a reason")


async def control_meter(
    uow: UnitOfWork,
    actor: Actor,
    meter_id: int,
    control: Control,
    now: datetime,
    *,
    keys: KeyRing,
    idempotency_key: str | None = None,
) -> int:
    """One command to one meter. Returns the command id. A second call with the same `idempotency_key`
    (a double submit, a retry) returns the first command and writes nothing."""
    _check(control)
    async with uow.begin() as conn:
        if idempotency_key is not None:
            existing = await conn.scalar(select(commands.c.id).where(commands.c.idempotency_key == idempotency_key))
            if existing is not None:
                return int(existing)
        meter = await meter_registry.get_meter(conn, meter_id)
        if meter.status != "active":
            raise InvalidField("meter", f"{meter.code} is {meter.status}")
        request = CommandRequest(
            meter_id, control.message(now), str(actor), idempotency_key=idempotency_key, note=control.note or None
        )
        before = await _settings_sent(conn, meter_id) if control.action is Action.CONFIGURE else None
        command_id = await enqueue_command(conn, keys, request, now)
        await audit.record(
            conn,
            actor,
            f"meter.{control.action.value}",
            now,
            target=f"meter:{meter.code}",
            before=before,
            after={**control.describe(), "command_id": command_id},
        )
    return command_id


async def _settings_sent(conn: AsyncConnection, meter_id: int) -> dict[str, Any] | None:
    """The settings last sent to the meter (its latest configure command), for the audit row's before."""
    c = commands.c
    payload = await conn.scalar(
        select(c.payload).where(c.meter_id == meter_id, c.kind == "configure").order_by(c.id.desc()).limit(1)
    )
    return dict(payload) if payload is not None else None


async def control_group(
    uow: UnitOfWork, actor: Actor, group: Group, control: Control, now: datetime, *, keys: KeyRing
) -> bulk.Job:
    """One command to every active meter of the group, as a bulk job with progress."""
    _check(control)
    async with uow.begin() as conn:
        meter_ids = await meter_registry.meters_in_group(
            conn,
            transformer_id=group.transformer_id,
            street=group.street,
            building=group.building,
            meter_ids=group.meter_ids,
        )
        job_id = await bulk.create_job(
            conn,
            actor,
            control.action.value,
            f"{control.action.value} to {group.describe()}",
            {**control.describe(), "group": group.describe()},
            len(meter_ids),
            now,
        )
    message = control.message(now)

    def build(meter_id: int) -> CommandRequest:
        return CommandRequest(
            meter_id, message, str(actor), idempotency_key=f"job:{job_id}:meter:{meter_id}", note=control.note or None
        )

    return await bulk.run_job(uow, job_id, meter_ids, build, now, keys=keys)


# What an operator or an integration may send to a meter directly. Credit (TopUp), tariffs (SetTariff),
# keys (KeyChange) and configuration go only through their use cases (top-up, tariffs, the key service).
DIRECT_COMMANDS: frozenset[type[Any]] = frozenset(
    {mp.RelayOff, mp.RelayOn, mp.SetPowerLimit, mp.TimeSync, mp.ReadRequest, mp.ClearTamper, mp.Ping}
)


async def send_command(
    uow: UnitOfWork,
    actor: Actor,
    meter_id: int,
    message: mp.Command,
    now: datetime,
    *,
    keys: KeyRing,
    idempotency_key: str | None,
    note: str | None = None,
) -> int:
    """Queue a direct command for the meter (state 0:0) and audit it (`command.<kind>`), in one
    transaction. Returns the command id; a second call with the same `idempotency_key` returns the first
    command and writes nothing. Raises InvalidField for a message that is not sent directly, and the
    outbox's errors (UnknownMeter …)."""
    if type(message) not in DIRECT_COMMANDS:
        raise InvalidField("command", f"{command_kind(message)} is not sent directly; billing sends it")
    kind = command_kind(message)
    async with uow.begin() as conn:
        if idempotency_key is not None:
            existing = await conn.scalar(select(commands.c.id).where(commands.c.idempotency_key == idempotency_key))
            if existing is not None:  # a retry or a double submit: the same command, nothing new to audit
                return int(existing)
        command_id = await enqueue_command(
            conn,
            keys,
            CommandRequest(meter_id, message, str(actor), idempotency_key=idempotency_key, note=note or None),
            now,
        )
        after: dict[str, Any] = {"command_id": command_id, **message_payload(message)}
        if note:
            after["note"] = note
        await audit.record(conn, actor, f"command.{kind}", now, target=f"meter:{meter_id}", after=after)
    return command_id


TIME_SYNC_PAGE = bulk.CHUNK * 10  # meters read a page at a time: memory stays flat in the fleet's size


def _due_for_time_sync(now: datetime, every: timedelta) -> Select[Any]:
    """The meters the scheduled time sync is for: active, and no `time_sync` queued to them within `every`."""
    c, m = commands.c, meters.c
    synced = select(c.id).where(c.meter_id == m.id, c.kind == "time_sync", c.created_at >= now - every)
    return select(m.id).where(m.status == "active", ~synced.exists())


async def sync_clocks(
    uow: UnitOfWork,
    now: datetime,
    *,
    keys: KeyRing,
    every: timedelta,
    actor: Actor = SYSTEM,
    progress: JobProgress = UNWATCHED,
) -> bulk.Job | None:
    """The scheduled time sync: a `time_sync` to every active meter that has had none for `every`, as one
    bulk job (None when every clock was set recently). A meter whose clock was set within `every` is left
    alone, so running it again queues nothing twice. The meters are read a page at a time in id order and
    each page queued before the next is read; a run stopped between pages ends its job with what it queued,
    and the next run queues the rest (they are still due)."""
    due = _due_for_time_sync(now, every)
    async with uow.begin() as conn:
        total = int(await conn.scalar(select(func.count()).select_from(due.subquery())) or 0)
        if not total:
            return None
        job_id = await bulk.create_job(
            conn,
            actor,
            Action.TIME_SYNC.value,
            f"scheduled time sync of {total} meters",
            {"action": Action.TIME_SYNC.value, "every_h": every.total_seconds() / 3600},
            total,
            now,
        )
    message = Control(Action.TIME_SYNC).message(now)

    def build(meter_id: int) -> CommandRequest:
        return CommandRequest(meter_id, message, str(actor), idempotency_key=f"job:{job_id}:meter:{meter_id}")

    after = 0
    while not progress.stop_requested:
        async with uow.connect() as conn:
            page = [
                int(i)
                for i in await conn.scalars(due.where(meters.c.id > after).order_by(meters.c.id).limit(TIME_SYNC_PAGE))
            ]
        if not page:
            break
        await bulk.run_job(uow, job_id, page, build, now, keys=keys, finish=False)
        progress.advanced(len(page))
        after = page[-1]
    async with uow.begin() as conn:
        await bulk.finish_job(conn, job_id, now)
        return await bulk.get_job(conn, job_id)
