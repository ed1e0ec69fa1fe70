"""Meter replies: SMS to our short number from a registered meter's number, verified, then acted on.

Each SMS goes through, in order: the destination must be our short number (else `wrong_number`), the
sender a registered active meter's SIM number (`unknown_sender`); parts are reassembled (a bad user-data
header: `malformed`); the frame's header is read without the key (`malformed`), must name the sending
meter (`wrong_meter`) and travel meter → head end (`wrong_direction`); the meter's key for the header's
key id is looked up (`unknown_key`); the frame is verified (`bad_tag`) and its counter checked against
the meter's inbound replay window (`replay`), which is updated in the same transaction
(meters.in_highest / in_bitmap); a payload that does not parse is `malformed`.

Anything refused becomes a wrong_sms row with its reason and a log line — never an exception. With a
`on_text` handler, a text SMS (no user-data header) from a number that is not a meter's is not refused here:
it is kept in `inbound_texts` in the same transaction (gateway.inbound_texts) and the handler is told after the
commit (subscriber self-service answers it from there, or refuses it itself; what is not yet answered survives
a restart).
Accepted messages: an acknowledgement moves its command (matched by meter and counter) to 1:1 or
rejected_meter; readings, balance reports and events are stored and handed to the event callback after
the commit. SMS that arrive together are handled in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import meter_protocol as mp
from gateway.events import (
    AlarmRaised,
    BalanceReported,
    CommandSettled,
    EventHandler,
    GatewayEvent,
    ReadingReceived,
    ignore_event,
    publish,
)
from gateway.inbound_texts import text_rows
from gateway.keys import KeyRing
from gateway.ports import InboundSms
from gateway.states import CommandState, Source, ack_target
from gateway.writegate import Pacer, WriteGate
from store.bulk import OnConflict, RowUpdate, insert_rows, select_among, update_rows
from store.schema.commands import (
    alarms,
    balance_reports,
    command_history,
    commands,
    inbound_texts,
    readings,
    wrong_sms,
)
from store.schema.registry import meters
from store.types import UtcDateTime

log = logging.getLogger("smsmeter.gateway.inbound")

# told of the text SMS from numbers that are not meters after the commit that kept them; it must not block
TextHandler = Callable[[Sequence[InboundSms]], None]

_TEXT_CODINGS = frozenset({0x00, 0x01, 0x03, 0x08})  # GSM-7, IA5, Latin-1, UCS-2 (a meter's frame is 0x04)
_YIELD_EVERY = 200  # frames decoded between two turns of the event loop

_SEVERITY = {
    mp.EventKind.TAMPER: "critical",
    mp.EventKind.MAGNETIC_FIELD: "critical",
    mp.EventKind.COVER_OPEN: "critical",
    mp.EventKind.NEUTRAL_MISSING: "critical",
    mp.EventKind.CREDIT_EXHAUSTED: "warning",
    mp.EventKind.LOW_CREDIT: "warning",
    mp.EventKind.POWER_LIMIT_EXCEEDED: "warning",
    mp.EventKind.OUTAGE: "warning",
}
_ALARM_KIND = {mp.EventKind.MAGNETIC_FIELD: "magnetic"}
# A reading's source: what the meter sent on its own, or its answer to a read request (readings, load profile).
_REPORT, _ANSWER = "meter_report", "read_request"


def alarm_kind(event: mp.EventKind) -> str:
    """The alarm kind an event report raises: the event's name in lower case ("magnetic" for the field)."""
    return _ALARM_KIND.get(event, event.name.lower())


def digits(number: str) -> str:
    """An address as plain digits: '+373 69-000 001' → '37369000001'."""
    if number.isascii() and number.isdigit():  # the usual case, on every SMS
        return number
    return "".join(ch for ch in number if ch.isdigit())


def epoch_to_utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(slots=True)
class InboundStats:
    received: int = 0
    frames: int = 0
    acks: int = 0
    reports: int = 0
    wrong: int = 0
    texts: int = 0  # handed to the text handler
    batches: int = 0
    wrong_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Meter:
    id: int
    code: str
    in_highest: int
    in_bitmap: int


@dataclass(slots=True)
class _Work:
    """One transaction's worth of effects, gathered while the batch is decoded."""

    wrong: list[dict[str, Any]] = field(default_factory=list)
    windows: dict[int, mp.ReplayWindow] = field(default_factory=dict)
    acks: list[tuple[int, mp.Ack]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    events: list[GatewayEvent] = field(default_factory=list)
    texts: list[InboundSms] = field(default_factory=list)


# the replay window is read, checked and written here: the meters are locked FOR NO KEY UPDATE, not FOR
# UPDATE, since rows that reference the meter (alarms, or a command updated twice in one transaction, whose
# foreign key PostgreSQL checks again) take KEY SHARE locks, which this lets pass
_METER_COLUMNS = (meters.c.id, meters.c.msisdn, meters.c.code, meters.c.in_highest, meters.c.in_bitmap)
_ACTIVE = (meters.c.status == "active",)
_BY_ID = (meters.c.id,)

_COMMAND_COLUMNS = (commands.c.id, commands.c.meter_id, commands.c.counter, commands.c.kind, commands.c.state)
_COMMAND_KEY = (commands.c.meter_id, commands.c.counter)
_COMMAND_ORDER = (commands.c.id,)

_REPLAY_WINDOWS = RowUpdate(
    meters,
    {"id": None, "in_highest": None, "in_bitmap": None},
    lambda _t, v: {"in_highest": v.c.in_highest, "in_bitmap": v.c.in_bitmap},
)

# an acknowledged command moves from the state it was read in (locked) to the one its answer calls for
_SETTLE = RowUpdate(
    commands,
    {"id": None, "state": None, "reason": commands.c.result_reason.type, "was": commands.c.state.type},
    lambda _t, v: {
        "state": v.c.state,
        "result_reason": v.c.reason,
        "next_attempt_at": None,
        "claimed_by": None,
        "claimed_until": None,
        "updated_at": bindparam("now", type_=UtcDateTime()),
        "final_at": bindparam("now", type_=UtcDateTime()),
    },
    lambda t, v: [t.c.state == v.c.was],
)
_READINGS_ONCE = OnConflict(("meter_id", "register", "read_at"))


class Inbound:
    """`on_sms` is the transport's inbound handler; `run()` records what arrives, in batches."""

    def __init__(
        self,
        engine: AsyncEngine,
        keys: KeyRing,
        short_number: str,
        *,
        clock: Callable[[], datetime] | None = None,
        on_event: EventHandler = ignore_event,
        gate: WriteGate | None = None,
        reassembler: mp.Reassembler | None = None,
        batch_interval_s: float = 0.02,
        on_text: TextHandler | None = None,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._short_number = digits(short_number)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_event = on_event
        self.on_text = on_text
        self._gate = gate or WriteGate.for_engine(engine)
        self._reassembler = reassembler or mp.Reassembler()
        self._pacer = Pacer(batch_interval_s)  # under load, at most one transaction per interval
        self._queue: list[tuple[InboundSms, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self.stats = InboundStats()

    def on_sms(self, sms: InboundSms) -> asyncio.Future[None]:
        """Queue an SMS (call it in the event loop's thread); the future is done once it is recorded
        (processed or stored as a wrong SMS), and fails only when the database failed, so the SMSC
        delivers it again. A future rather than a coroutine: no task per SMS in the transport."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((sms, fut))
        self._wake.set()
        return fut

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        self._stopping = False
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                continue
            if not self._stopping:
                await self._pacer.turn()  # busy: what arrives meanwhile joins this transaction
            batch, self._queue = self._queue, []
            try:
                await self.process([sms for sms, _ in batch])
            except Exception as exc:
                log.exception("recording %d inbound SMS failed; the SMSC will deliver them again", len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                await asyncio.sleep(0.5)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def process(self, batch: Sequence[InboundSms]) -> None:
        """Handle SMS that arrived together, in one transaction; events go out after the commit."""
        now = self._clock()
        work = _Work()
        self.stats.received += len(batch)
        async with self._gate, self._engine.begin() as conn:
            senders = await self._meters_by_number(conn, {digits(s.source) for s in batch})
            frames: list[tuple[InboundSms, _Meter, bytes]] = []
            for sms in batch:
                if digits(sms.destination) != self._short_number:
                    self._wrong(work, sms, sms.body, "wrong_number", f"sent to {sms.destination}", None)
                    continue
                meter = senders.get(digits(sms.source))
                if meter is None:
                    if self.on_text is not None and not sms.has_udh and sms.data_coding in _TEXT_CODINGS:
                        work.texts.append(sms)
                        continue
                    self._wrong(work, sms, sms.body, "unknown_sender", "not a registered meter's number", None)
                    continue
                try:
                    self._reassembler, frame = self._reassembler.add(
                        sender=digits(sms.source), body=sms.body, has_udh=sms.has_udh, now=int(now.timestamp())
                    )
                except mp.ProtocolError as exc:
                    self._wrong(work, sms, sms.body, "malformed", exc.reason, meter.id)
                    continue
                if frame is not None:
                    frames.append((sms, meter, frame))
            if frames:
                await self._decode(conn, frames, work, now)
            await self._write(conn, work, now)
        self.stats.batches += 1
        if work.texts and self.on_text is not None:
            self.stats.texts += len(work.texts)
            self.on_text(work.texts)
        if work.events:
            await publish(self._on_event, work.events)

    async def _meters_by_number(self, conn: AsyncConnection, numbers: set[str]) -> dict[str, _Meter]:
        rows = await select_among(
            conn, _METER_COLUMNS, meters.c.msisdn, numbers, where=_ACTIVE, order_by=_BY_ID, lock_of=meters
        )
        return {row.msisdn: _Meter(row.id, row.code, row.in_highest, row.in_bitmap) for row in rows}

    async def _decode(
        self, conn: AsyncConnection, frames: list[tuple[InboundSms, _Meter, bytes]], work: _Work, now: datetime
    ) -> None:
        headers: list[tuple[InboundSms, _Meter, bytes, mp.FrameHeader]] = []
        for sms, meter, frame in frames:
            try:
                header = mp.peek_header(frame)
            except mp.ProtocolError as exc:
                self._wrong(work, sms, frame, "malformed", exc.reason, meter.id)
                continue
            if header.meter_code != meter.code:
                self._wrong(work, sms, frame, "wrong_meter", f"frame names meter {header.meter_code}", meter.id)
                continue
            if header.direction is not mp.Direction.UPLINK:
                self._wrong(work, sms, frame, "wrong_direction", "a head-end frame came back", meter.id)
                continue
            headers.append((sms, meter, frame, header))
        keys = await self._keys.keys_by_id(conn, [(m.id, h.key_id) for _, m, _, h in headers])
        for n, (sms, meter, frame, header) in enumerate(headers, start=1):
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the transport's reads and writes in between a long batch
            key = keys.get((meter.id, header.key_id))
            if key is None:
                self._wrong(work, sms, frame, "unknown_key", f"no key {header.key_id} for this meter", meter.id)
                continue
            window = work.windows.get(meter.id) or mp.ReplayWindow(meter.in_highest, meter.in_bitmap)
            try:
                decoded = mp.decode_frame(
                    frame, key=key, window=window, meter_code=meter.code, direction=mp.Direction.UPLINK
                )
            except mp.BadTag as exc:
                self._wrong(work, sms, frame, "bad_tag", exc.reason, meter.id)
                continue
            except mp.ReplayError as exc:
                self._wrong(work, sms, frame, "replay", exc.reason, meter.id)
                continue
            except mp.ProtocolError as exc:
                self._wrong(work, sms, frame, "malformed", exc.reason, meter.id)
                continue
            assert decoded.window is not None
            work.windows[meter.id] = decoded.window
            self.stats.frames += 1
            self._handle(work, meter, decoded.message, now)

    def _handle(self, work: _Work, meter: _Meter, message: mp.Message, now: datetime) -> None:
        if isinstance(message, mp.Ack):
            work.acks.append((meter.id, message))
            self.stats.acks += 1
            return
        self.stats.reports += 1
        if isinstance(message, mp.Readings):
            at = epoch_to_utc(message.taken_at)
            for register, value in (
                ("import_wh", message.import_wh),
                ("export_wh", message.export_wh),
                ("power_w", message.power_w),
                ("voltage_dv", message.voltage_dv),
            ):
                self._reading(work, meter.id, at, register, value, now, _ANSWER)
        elif isinstance(message, mp.BalanceReport):
            self._balance(
                work,
                meter.id,
                epoch_to_utc(message.taken_at),
                message.credit_minor,
                message.relay_closed,
                message.emergency_active,
                message.last_transfer_id,
                now,
            )
        elif isinstance(message, mp.PeriodicReport):
            at = epoch_to_utc(message.taken_at)
            self._reading(work, meter.id, at, "import_wh", message.import_wh, now)
            self._reading(work, meter.id, at, "power_w", message.power_w, now)
            self._balance(
                work, meter.id, at, message.credit_minor, message.relay_closed, message.emergency_active, None, now
            )
        elif isinstance(message, mp.LoadProfile):
            for i, energy_wh in enumerate(message.energies_wh):
                at = epoch_to_utc(message.start_at + i * message.interval_s)
                self._reading(work, meter.id, at, "profile_wh", energy_wh, now, _ANSWER)
        elif isinstance(message, mp.EventReport):
            kind = alarm_kind(message.event)
            severity = _SEVERITY.get(message.event, "info")
            at = epoch_to_utc(message.occurred_at)
            detail = f"{message.event.name.lower()} value {message.value}"
            work.alarms.append(
                {"meter_id": meter.id, "kind": kind, "severity": severity, "raised_at": at, "detail": detail}
            )
            work.events.append(AlarmRaised(meter.id, kind, severity, at, detail))
        else:  # a head-end message type cannot get here (direction checked), but never crash on one
            work.wrong.append(
                wrong_sms_row(meter.id, "", self._short_number, b"", "not_a_report", type(message).__name__, now)
            )

    def _reading(
        self,
        work: _Work,
        meter_id: int,
        at: datetime,
        register: str,
        value: int,
        now: datetime,
        source: str = _REPORT,
    ) -> None:
        work.readings.append(
            {
                "meter_id": meter_id,
                "read_at": at,
                "register": register,
                "value": value,
                "received_at": now,
                "source": source,
            }
        )
        work.events.append(ReadingReceived(meter_id, at, register, value))

    def _balance(
        self,
        work: _Work,
        meter_id: int,
        at: datetime,
        credit_minor: int,
        relay_closed: bool,
        emergency_active: bool,
        last_transfer_id: int | None,
        now: datetime,
    ) -> None:
        work.balances.append(
            {
                "meter_id": meter_id,
                "reported_at": at,
                "credit_minor": credit_minor,
                "relay_closed": int(relay_closed),
                "received_at": now,
            }
        )
        work.events.append(
            BalanceReported(meter_id, at, credit_minor, relay_closed, emergency_active, last_transfer_id)
        )

    def _wrong(self, work: _Work, sms: InboundSms, body: bytes, reason: str, detail: str, meter_id: int | None) -> None:
        log.warning("wrong SMS from %s to %s: %s (%s)", sms.source, sms.destination, reason, detail)
        self.stats.wrong += 1
        self.stats.wrong_by_reason[reason] = self.stats.wrong_by_reason.get(reason, 0) + 1
        work.wrong.append(wrong_sms_row(meter_id, sms.source, sms.destination, body, reason, detail, sms.received_at))

    async def _write(self, conn: AsyncConnection, work: _Work, now: datetime) -> None:
        windows = [{"id": m, "in_highest": w.highest, "in_bitmap": w.bitmap} for m, w in sorted(work.windows.items())]
        await update_rows(conn, _REPLAY_WINDOWS, windows)
        if work.acks:
            await self._settle(conn, work, now)
        await insert_rows(conn, readings, work.readings, _READINGS_ONCE)
        if work.balances:
            await conn.execute(insert(balance_reports), work.balances)
        if work.alarms:
            await conn.execute(insert(alarms), work.alarms)
        if work.wrong:
            await conn.execute(insert(wrong_sms), work.wrong)
        if work.texts:
            await conn.execute(insert(inbound_texts), text_rows(work.texts))

    async def _settle(self, conn: AsyncConnection, work: _Work, now: datetime) -> None:
        """Move acknowledged commands forward: OK / DUPLICATE → 1:1, REJECTED → rejected_meter."""
        wanted = sorted({(meter_id, ack.acked_counter) for meter_id, ack in work.acks})
        # the commands are found and locked in id order, as the dispatcher locks them (the two never deadlock)
        rows = await select_among(
            conn, _COMMAND_COLUMNS, _COMMAND_KEY, wanted, order_by=_COMMAND_ORDER, lock_of=commands
        )
        current: dict[tuple[int, int], Any] = {(r.meter_id, r.counter): r for r in rows}
        state_now = {k: CommandState(r.state) for k, r in current.items()}
        updates: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for meter_id, ack in work.acks:
            row = current.get((meter_id, ack.acked_counter))
            if row is None:
                log.warning("acknowledgement from meter %s for unknown counter %s", meter_id, ack.acked_counter)
                work.wrong.append(
                    wrong_sms_row(
                        meter_id,
                        "",
                        self._short_number,
                        b"",
                        "unmatched_ack",
                        f"ack for counter {ack.acked_counter}, no such command",
                        now,
                    )
                )
                continue
            state = state_now[(meter_id, ack.acked_counter)]
            if state.is_final:
                continue  # a second acknowledgement (e.g. DUPLICATE to a resend): already settled
            target = ack_target(ack.applied)  # a duplicate of a first refusal is a refusal (protocol §9)
            reason = ack.result.name.lower() if target is CommandState.PROCESSED else ack.reason.name.lower()
            updates.append({"id": row.id, "state": target.value, "reason": reason, "was": state.value})
            history.append(
                {
                    "command_id": row.id,
                    "from_state": state.value,
                    "to_state": target.value,
                    "at": now,
                    "source": Source.METER.value,
                    "detail": f"{ack.result.name.lower()}"
                    + (f" {ack.reason.name.lower()}" if ack.reason is not mp.ReasonCode.NONE else "")
                    + f", credit {ack.credit_minor}",
                }
            )
            # a meter answers each counter once per frame received; the first answer decides
            state_now[(meter_id, ack.acked_counter)] = target
            work.events.append(
                CommandSettled(row.id, meter_id, row.kind, target.value, reason, at=now, credit_minor=ack.credit_minor)
            )
        await update_rows(conn, _SETTLE, updates, now=now)
        await insert_rows(conn, command_history, history)


def wrong_sms_row(
    meter_id: int | None, source: str, destination: str, body: bytes, reason: str, detail: str, at: datetime
) -> dict[str, Any]:
    return {
        "received_at": at,
        "source": source[:30],
        "destination": destination[:30],
        "body": bytes(body),
        "reason": reason,
        "detail": detail[:500],
        "meter_id": meter_id,
    }


__all__ = ["Inbound", "InboundStats", "TextHandler", "digits", "epoch_to_utc", "wrong_sms_row"]
