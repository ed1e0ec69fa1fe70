"""Remote control: relay off / on with a reason, power limit, time sync, read request — for one meter or
a group (transformer, street, building). One meter: one command in one transaction with its audit row.
A group: a bulk job with progress (`billing.bulk`). `send_command` sends one of the messages an
operator or an integration may send directly (as the API takes them, JSON or the protocol's XML)."""

from __future__ import annotations

import calendar
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

import meter_protocol as mp
from billing import bulk, registry
from billing.errors import InvalidField
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, command_kind, enqueue_command, message_payload
from store import audit
from store.audit import Actor
from store.schema.commands import commands
from store.uow import UnitOfWork


class Action(enum.StrEnum):
    RELAY_OFF = "relay_off"
    RELAY_ON = "relay_on"
    POWER_LIMIT = "power_limit"
    TIME_SYNC = "time_sync"
    READ = "read"


@dataclass(frozen=True, slots=True)
class Control:
    action: Action
    reason: mp.RelayReason = mp.RelayReason.OPERATOR
    note: str = ""  # the operator's words, kept in the audit log
    limit_w: int = 0
    read_items: mp.ReadItems = mp.ReadItems.REGISTERS | mp.ReadItems.BALANCE

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
        return mp.ReadRequest(self.read_items)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"action": self.action.value, "note": self.note}
        if self.action in (Action.RELAY_OFF, Action.RELAY_ON):
            out["reason"] = self.reason.name.lower()
        if self.action is Action.POWER_LIMIT:
            out["limit_w"] = self.limit_w
        return out


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
        meter = await registry.get_meter(conn, meter_id)
        if meter.status != "active":
            raise InvalidField("meter", f"{meter.code} is {meter.status}")
        request = CommandRequest(meter_id, control.message(now), str(actor), idempotency_key=idempotency_key)
        command_id = await enqueue_command(conn, keys, request, now)
        await audit.record(
            conn,
            actor,
            f"meter.{control.action.value}",
            now,
            target=f"meter:{meter.code}",
            after={**control.describe(), "command_id": command_id},
        )
    return command_id


async def control_group(
    uow: UnitOfWork, actor: Actor, group: Group, control: Control, now: datetime, *, keys: KeyRing
) -> bulk.Job:
    """One command to every active meter of the group, as a bulk job with progress."""
    _check(control)
    async with uow.begin() as conn:
        meter_ids = await registry.meters_in_group(
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
        return CommandRequest(meter_id, message, str(actor), idempotency_key=f"job:{job_id}:meter:{meter_id}")

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
            conn, keys, CommandRequest(meter_id, message, str(actor), idempotency_key=idempotency_key), now
        )
        after: dict[str, Any] = {"command_id": command_id, **message_payload(message)}
        if note:
            after["note"] = note
        await audit.record(conn, actor, f"command.{kind}", now, target=f"meter:{meter_id}", after=after)
    return command_id
