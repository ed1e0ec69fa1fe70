"""Remote control: relay off / on with a reason, power limit, time sync, read request — for one meter or
a group (transformer, street, building). One meter: one command in one transaction with its audit row.
A group: a bulk job with progress (`billing.bulk`)."""

from __future__ import annotations

import calendar
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import meter_protocol as mp
from billing import bulk, registry
from billing.errors import InvalidField
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_command
from store import audit
from store.audit import Actor
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
    uow: UnitOfWork, actor: Actor, meter_id: int, control: Control, now: datetime, *, keys: KeyRing
) -> int:
    """One command to one meter. Returns the command id."""
    _check(control)
    async with uow.begin() as conn:
        meter = await registry.get_meter(conn, meter_id)
        if meter.status != "active":
            raise InvalidField("meter", f"{meter.code} is {meter.status}")
        command_id = await enqueue_command(conn, keys, CommandRequest(meter_id, control.message(now), str(actor)), now)
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
