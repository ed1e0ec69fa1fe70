"""Issuing a command to a meter from the console or the API: one transaction that writes the outbox row
(gateway.outbox, the only way to a meter) and the audit row. Top-ups and tariffs are not sent from here:
they go through billing, which keeps the ledger and the tariff versions in step with the meter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

import meter_protocol as mp
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, command_kind, enqueue_command, message_payload
from store import audit
from store.schema.commands import commands
from store.uow import UnitOfWork
from web.errors import InvalidInput, ServiceUnavailable

# What an operator or an integration may send to a meter directly. Credit (TopUp), tariffs (SetTariff),
# keys (KeyChange) and configuration come only from billing's and the key service's use cases.
DIRECT_COMMANDS: frozenset[type[Any]] = frozenset(
    {mp.RelayOff, mp.RelayOn, mp.SetPowerLimit, mp.TimeSync, mp.ReadRequest, mp.ClearTamper, mp.Ping}
)

RELAY_REASONS = {reason.name.lower(): reason for reason in mp.RelayReason}


@dataclass(frozen=True, slots=True)
class Issued:
    command_id: int
    kind: str


async def issue_command(
    uow: UnitOfWork,
    keys: KeyRing | None,
    actor: audit.Actor,
    meter_id: int,
    message: Any,
    now: datetime,
    *,
    idempotency_key: str | None,
    note: str | None = None,
) -> Issued:
    """Queue `message` for the meter (state 0:0) and audit it, in one transaction."""
    if type(message) not in DIRECT_COMMANDS:
        raise InvalidInput("command", f"{command_kind(message)} is not sent directly; billing sends it")
    if keys is None:
        raise ServiceUnavailable("meter keys are not loaded")
    kind = command_kind(message)
    async with uow.begin() as conn:
        if idempotency_key is not None:
            existing = await conn.scalar(select(commands.c.id).where(commands.c.idempotency_key == idempotency_key))
            if existing is not None:  # a retry or a double submit: the same command, nothing new to audit
                return Issued(int(existing), kind)
        command_id = await enqueue_command(
            conn,
            keys,
            CommandRequest(meter_id=meter_id, message=message, created_by=str(actor), idempotency_key=idempotency_key),
            now,
        )
        after: dict[str, Any] = {"command_id": command_id, **message_payload(message)}
        if note:
            after["note"] = note
        await audit.record(conn, actor, f"command.{kind}", now, target=f"meter:{meter_id}", after=after)
    return Issued(command_id, kind)


def command_from_fields(body: dict[str, Any], now: datetime) -> Any:
    """A command from the API's JSON form: {"kind": "relay_off", "reason": "operator", ...}."""
    kind = body.get("kind")
    if kind in ("relay_off", "relay_on"):
        reason_name = str(body.get("reason", "operator")).lower()
        if reason_name not in RELAY_REASONS:
            raise InvalidInput("reason", f"must be one of {', '.join(RELAY_REASONS)}")
        cls = mp.RelayOff if kind == "relay_off" else mp.RelayOn
        return cls(reason=RELAY_REASONS[reason_name])
    if kind == "read_request":
        names = body.get("items", ["registers", "balance"])
        if not isinstance(names, list) or not names:
            raise InvalidInput("items", "must be a list of registers, balance, load_profile")
        items = mp.ReadItems(0)
        for name in names:
            try:
                items |= mp.ReadItems[str(name).upper()]
            except KeyError:
                raise InvalidInput("items", f"unknown item {name!r}") from None
        return mp.ReadRequest(items=items)
    if kind == "set_power_limit":
        limit = body.get("limit_w")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise InvalidInput("limit_w", "must be a whole number of watts, 0 for no limit")
        return mp.SetPowerLimit(limit_w=limit)
    if kind == "time_sync":
        return mp.TimeSync(utc_at=int(now.timestamp()))
    if kind == "clear_tamper":
        return mp.ClearTamper()
    if kind == "ping":
        return mp.Ping()
    raise InvalidInput(
        "kind", "must be one of relay_off, relay_on, read_request, set_power_limit, time_sync, clear_tamper, ping"
    )
