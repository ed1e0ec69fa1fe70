"""A fleet of reference meters that answer SMS as conforming meters would (meter_protocol.reference_meter).

The simulated network (in process, or behind the simulated SMPP server) hands each delivered part to
`Fleet.answer`; the fleet reassembles parts per meter number, lets that meter's reference state machine
`receive` the frame, and returns its reply frames as SMS user data (split and concatenated like any
meter's). The fleet's meters are loaded from the registry with their keys (`load_fleet` at start, up to the
fleet's capacity; `load_meter` when an SMS goes to a number the fleet does not hold), so `smsmeter serve`
with no configuration shows commands walking 0:0 → 1:1 on the demo meters.

Memory is bounded by the fleet's `capacity`, not by the size of the registry: the fleet holds the meters it
used last, and a meter it lets go of comes back, when an SMS reaches it again, in the state it last reported
(credit, relay, import register), as after a restart of the simulator. While it is held, a meter keeps its
state (replay windows, transfer ids, credit): a resent or duplicated frame is answered DUPLICATE and credits
nothing twice. The default capacity holds every meter of a utility of tens of thousands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

import meter_protocol as mp
from gateway.inbound import digits
from gateway.keys import KeyRing
from gateway.ports import OutboundSms
from gateway.simulator import Reply, Responder
from meter_protocol import reference_meter as ref
from meter_protocol.registers import MAIN_REGISTERS
from store.schema.commands import balance_reports, readings
from store.schema.registry import meters
from store.sql import among_param, per_dialect

log = logging.getLogger("smsmeter.gateway.fleet")

CAPACITY = 50_000  # meters held at once (about 1.3 kB each)
_BATCH = 1_000  # meters loaded per round trip


@dataclass(frozen=True, slots=True)
class FleetReply:
    """One SMS a meter sends back: user data (with its UDH when `has_udh`) from `source`."""

    source: str
    body: bytes
    has_udh: bool


class Fleet:
    def __init__(self, *, clock: Callable[[], datetime] | None = None, capacity: int = CAPACITY) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self.capacity = capacity
        self._meters: OrderedDict[str, ref.MeterState] = OrderedDict()  # least recently used first
        self.released = 0  # meters let go of to stay within the capacity
        self._reassembler = mp.Reassembler(max_pending=100_000)
        self._reference = 0
        self.frames_received = 0
        self.frames_answered = 0

    def __len__(self) -> int:
        return len(self._meters)

    def __contains__(self, msisdn: str) -> bool:
        return digits(msisdn) in self._meters

    @property
    def full(self) -> bool:
        return len(self._meters) >= self.capacity

    def _hold(self, number: str, state: ref.MeterState) -> None:
        self._meters[number] = state
        self._meters.move_to_end(number)
        while len(self._meters) > self.capacity:
            self._meters.popitem(last=False)
            self.released += 1

    def add(
        self,
        msisdn: str,
        meter_code: str,
        key: bytes,
        *,
        key_id: int = 0,
        credit_minor: int = 0,
        relay_closed: bool = True,
        import_wh: int = 0,
        report_interval_s: int = 0,
    ) -> None:
        """A new meter at this number (an existing one at the number is kept as it is): with the credit,
        relay and register it last reported, and a periodic report every `report_interval_s` (0: none)."""
        meter = ref.new_meter(meter_code, key, key_id=key_id, credit_minor=credit_minor)
        meter = replace(
            meter,
            relay_closed=relay_closed,
            relay_reason=None if relay_closed else mp.RelayReason.CREDIT,
            import_ws=import_wh * 3600,
            config=replace(meter.config, report_interval_s=report_interval_s),
        )
        number = digits(msisdn)
        if number not in self._meters:
            self._hold(number, meter)

    def meter(self, msisdn: str) -> ref.MeterState:
        return self._meters[digits(msisdn)]

    def replace(self, msisdn: str, state: ref.MeterState) -> None:
        """Put a meter in a given state (tests: a tampered meter, low credit …)."""
        self._hold(digits(msisdn), state)

    def answer(self, destination: str, body: bytes, has_udh: bool) -> list[FleetReply]:
        """Hand one delivered SMS part to the meter at `destination`; return its replies (none until the
        last part of a frame arrives, none for a frame the meter cannot authenticate)."""
        number = digits(destination)
        state = self._meters.get(number)
        if state is None:
            log.debug("no simulated meter at %s", destination)
            return []
        now = self._clock()
        try:
            self._reassembler, frame = self._reassembler.add(
                sender=number, body=body, has_udh=has_udh, now=int(now.timestamp())
            )
        except mp.ProtocolError as exc:
            log.info("simulated meter %s dropped a part: %s", destination, exc.reason)
            return []
        if frame is None:
            return []
        self.frames_received += 1
        state, frames = ref.receive(state, frame, int(now.timestamp()))
        self._hold(number, state)
        if frames:
            self.frames_answered += 1
        return [reply for f in frames for reply in self._as_sms(number, f)]

    def _as_sms(self, number: str, frame: bytes) -> list[FleetReply]:
        self._reference = (self._reference + 1) % 256
        parts = mp.split_frame(frame, reference=self._reference)
        has_udh = len(parts) > 1
        return [FleetReply(number, part, has_udh) for part in parts]

    def tick(self, seconds: int, load_w: Callable[[str, datetime], int]) -> list[FleetReply]:
        """Let `seconds` pass for every meter, each drawing `load_w(number, now)` watts: credit is used,
        and the periodic reports that fall due are the replies (what the meters send on their own)."""
        now = self._clock()
        replies: list[FleetReply] = []
        for number, state in list(self._meters.items()):
            start = int(now.timestamp()) - seconds
            state, frames = ref.advance(state, seconds, max(0, load_w(number, now)), start)
            self._meters[number] = state
            replies.extend(reply for f in frames for reply in self._as_sms(number, f))
        return replies

    def raise_event(self, msisdn: str, kind: mp.EventKind, value: int = 0) -> list[FleetReply]:
        """Let a meter report an event (tamper, cover open …) as it would on its own."""
        number = digits(msisdn)
        state, frames = ref.raise_event(self._meters[number], kind, int(self._clock().timestamp()), value)
        self._hold(number, state)
        return [reply for f in frames for reply in self._as_sms(number, f)]


@per_dialect
def _last_balances(postgres: bool) -> Any:
    b = balance_reports.c
    latest = select(func.max(b.id).label("id")).where(among_param(b.meter_id, "ids", postgres)).group_by(b.meter_id)
    return select(b.meter_id, b.credit_minor, b.relay_closed).where(b.id.in_(latest.scalar_subquery()))


@per_dialect
def _last_registers(postgres: bool) -> Any:
    r = readings.c
    return (
        select(r.meter_id, func.max(r.value))
        .where(among_param(r.meter_id, "ids", postgres), r.register.in_(MAIN_REGISTERS))
        .group_by(r.meter_id)
    )


async def _last_reports(
    conn: AsyncConnection, meter_ids: list[int]
) -> tuple[dict[int, tuple[int, bool]], dict[int, int]]:
    """Per meter of `meter_ids`: the credit and relay of its last balance report, and its highest main
    register."""
    credit = {
        int(row.meter_id): (int(row.credit_minor), bool(row.relay_closed))
        for row in await conn.execute(_last_balances(conn), {"ids": meter_ids})
    }
    registers = {
        int(meter_id): int(value) for meter_id, value in await conn.execute(_last_registers(conn), {"ids": meter_ids})
    }
    return credit, registers


async def _add_rows(
    conn: AsyncConnection, keys: KeyRing, fleet: Fleet, rows: Iterable[Any], report_interval_s: int
) -> int:
    """Add the meters of `rows` (id, msisdn, code) with a usable key, in the state they last reported."""
    fresh = [r for r in rows if r.msisdn not in fleet]
    if not fresh:
        return 0
    ids = [int(r.id) for r in fresh]
    found = await keys.keys_for(conn, ids)
    credit, registers = await _last_reports(conn, ids)
    added = 0
    for row in fresh:
        if row.id not in found:
            continue
        key_id, key = found[row.id]
        credit_minor, relay_closed = credit.get(row.id, (0, True))
        try:
            fleet.add(
                row.msisdn,
                row.code,
                key,
                key_id=key_id,
                credit_minor=credit_minor,
                relay_closed=relay_closed,
                import_wh=registers.get(row.id, 0),
                report_interval_s=report_interval_s,
            )
        except mp.ProtocolError as exc:
            log.warning("meter %s cannot be simulated: %s", row.code, exc.reason)
            continue
        added += 1
    return added


def _active() -> Any:
    return select(meters.c.id, meters.c.msisdn, meters.c.code).where(meters.c.status == "active")


async def load_fleet(conn: AsyncConnection, keys: KeyRing, fleet: Fleet, *, report_interval_s: int = 0) -> int:
    """Add the active meters of the registry (with a usable key) that the fleet does not have yet, in id
    order, in the state they last reported (credit, relay, import register), until the fleet is full;
    returns how many were added."""
    added, after = 0, 0
    while not fleet.full:
        batch = min(_BATCH, fleet.capacity - len(fleet))
        rows = (await conn.execute(_active().where(meters.c.id > after).order_by(meters.c.id).limit(batch))).all()
        if not rows:
            break
        after = int(rows[-1].id)
        added += await _add_rows(conn, keys, fleet, rows, report_interval_s)
    return added


async def load_meter(
    conn: AsyncConnection, keys: KeyRing, fleet: Fleet, msisdn: str, *, report_interval_s: int = 0
) -> bool:
    """Add the active meter at `msisdn` (if the registry has one, with a usable key) in the state it last
    reported; True when the fleet holds it afterwards."""
    if msisdn in fleet:
        return True
    numbers = {msisdn, digits(msisdn), "+" + digits(msisdn)}
    rows = (await conn.execute(_active().where(meters.c.msisdn.in_(sorted(numbers))))).all()
    await _add_rows(conn, keys, fleet, rows, report_interval_s)
    return msisdn in fleet


def household_load_w(number: str, now: datetime) -> int:
    """A household's draw in watts at `now`: its own level (from its number) shaped by the hour of the day
    (low at night, a peak in the evening). For the simulated fleet's own reports."""
    level = 150 + int(digits(number)[-4:] or "0") * 7919 % 500
    shape = (40, 35, 30, 30, 35, 50, 80, 110, 100, 90, 85, 90, 95, 90, 85, 90, 110, 140, 170, 180, 160, 130, 90, 60)
    return level * shape[now.hour] // 100


async def report_readings(
    fleet: Fleet,
    send: Callable[[FleetReply], None],
    *,
    every_s: float,
    load_w: Callable[[str, datetime], int] = household_load_w,
) -> None:
    """Until cancelled: every `every_s`, let the fleet's meters use energy and `send` the reports they
    make (readings, credit, relay) as SMS from the meters."""
    while True:
        await asyncio.sleep(every_s)
        for reply in fleet.tick(max(1, round(every_s)), load_w):
            send(reply)


def fleet_responder(
    fleet: Fleet,
    *,
    reply_delay_s: float = 0.0,
    refresh: Callable[[str], Awaitable[object]] | None = None,
    refresh_every_s: float = 5.0,
) -> Responder:
    """The fleet as the simulated network's responder (gateway.simulator). A part to a number the fleet
    does not hold makes it `refresh(number)` (load that meter from the registry); a number the registry
    does not have either is asked for again at most every `refresh_every_s`."""
    missing: OrderedDict[str, float] = OrderedDict()  # numbers the registry did not have, when last asked

    async def respond(sms: OutboundSms) -> Sequence[Reply]:
        number = sms.destination
        if refresh is not None and number not in fleet:
            asked = missing.get(number)
            if asked is None or time.monotonic() - asked >= refresh_every_s:
                await refresh(number)
                if number in fleet:
                    missing.pop(number, None)
                else:
                    missing[number] = time.monotonic()
                    while len(missing) > 10_000:
                        missing.popitem(last=False)
        return [
            Reply(r.body, r.has_udh, delay_s=reply_delay_s, source=r.source)
            for r in fleet.answer(sms.destination, sms.body, sms.has_udh)
        ]

    return respond
