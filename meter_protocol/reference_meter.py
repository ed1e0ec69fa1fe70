"""The reference prepaid meter: a pure state machine (docs/protocol.md §12).

`MeterState` is a value; `receive`, `advance` and `raise_event` return a new state and the reply frames
the meter sends (already protected with its key and uplink counter). The simulator, the tests and meter
makers use it to see what a conforming meter does with every frame:

- a frame that does not authenticate (wrong meter, wrong or unknown key, bad tag, garbled) is dropped
  silently — the meter never answers what it cannot authenticate;
- an authentic frame gets exactly one signed `Ack`: OK, DUPLICATE (the counter, or a top-up's transfer
  id, was already processed: nothing is done again) or REJECTED with a reason;
- credit is consumed by energy (tariff price) and a standing charge; low credit, emergency credit and
  exhaustion raise events; at exhaustion the relay opens unless friendly hours hold it closed.

Times are integer epoch seconds. `now` is true UTC; the meter's clock is `now + clock_offset_s`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from meter_protocol.errors import (
    BadXml,
    KeyUnwrapFailed,
    MalformedField,
    OutsideWindow,
    Oversize,
    ProtocolError,
    Replayed,
    UnknownType,
    ValueOutOfRange,
)
from meter_protocol.frame import (
    FrameHeader,
    Profile,
    encode_frame,
    open_frame,
    parse_plaintext,
    parse_raw_header,
)
from meter_protocol.keys import check_key, unwrap_key
from meter_protocol.messages import (
    I32,
    I64,
    Ack,
    AckResult,
    BalanceReport,
    ClearTamper,
    Configure,
    EventKind,
    EventReport,
    KeyChange,
    LoadProfile,
    Message,
    MessageType,
    PeriodicReport,
    Ping,
    Readings,
    ReadItems,
    ReadRequest,
    ReasonCode,
    RelayOff,
    RelayOn,
    RelayReason,
    SetPowerLimit,
    SetTariff,
    TariffKind,
    TimeSync,
    TopUp,
)
from meter_protocol.meter_code import validate_meter_code
from meter_protocol.replay import ReplayWindow

WS_PER_KWH_MILLI = 3_600_000 * 1000  # watt-seconds per kWh, times 1000 for prices in milli-minor
SECONDS_PER_DAY = 86_400
SUB_STEP_S = 900  # consumption is integrated in steps that never cross a quarter hour
PROFILE_HOURS = 48
EVENT_LOG = 64
TRANSFER_WINDOW = 64
NOMINAL_VOLTAGE_DV = 2300


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the meter did with one head-end counter (kept while the counter is inside the window)."""

    counter: int
    result: AckResult
    reason: ReasonCode


@dataclass(frozen=True, slots=True)
class MeterState:
    meter_code: str
    key_id: int
    key: bytes
    previous_key_id: int | None = None  # still accepted for frames in flight until the new key is used
    previous_key: bytes | None = None
    downlink: ReplayWindow = field(default_factory=ReplayWindow)
    outcomes: tuple[Outcome, ...] = ()
    uplink_counter: int = 0  # the last counter this meter used
    transfers: ReplayWindow = field(default_factory=lambda: ReplayWindow(size=TRANSFER_WINDOW))
    last_transfer_id: int = 0
    credit_minor: int = 0
    energy_remainder: int = 0  # sub-minor energy charge carried over, in 1/WS_PER_KWH_MILLI minor
    standing_remainder: int = 0  # sub-minor standing charge carried over, in 1/86400 minor
    relay_closed: bool = True
    relay_reason: RelayReason | None = None  # why it is open
    tariff: SetTariff | None = None
    pending_tariff: SetTariff | None = None
    power_limit_w: int = 0
    config: Configure = field(default_factory=lambda: Configure(low_credit_minor=0, emergency_credit_minor=0))
    clock_offset_s: int = 0
    import_ws: int = 0
    export_wh: int = 0  # the export register (a prosumer's); the reference meter never exports more
    month_index: int = 0
    month_import_ws: int = 0
    power_w: int = 0
    low_credit_alarmed: bool = False
    emergency_alarmed: bool = False
    tamper_latched: bool = False
    last_report_at: int = 0
    profile: tuple[tuple[int, int], ...] = ()  # (hour start, Ws), the last PROFILE_HOURS hours
    events: tuple[EventReport, ...] = ()  # the last EVENT_LOG events
    accepts_xml: bool = True
    report_profile: Profile = Profile.BINARY  # the profile of what the meter sends unprompted (§11.3)
    dropped_frames: int = 0

    @property
    def import_wh(self) -> int:
        return self.import_ws // 3600

    @property
    def emergency_active(self) -> bool:
        return self.credit_minor < 0

    @property
    def exhausted(self) -> bool:
        """No credit left, emergency credit included."""
        return self.credit_minor <= -self.config.emergency_credit_minor


def new_meter(meter_code: str, key: bytes, *, key_id: int = 0, credit_minor: int = 0) -> MeterState:
    """A fresh meter as it leaves the factory: relay closed, no tariff (energy is free until one comes)."""
    return MeterState(validate_meter_code(meter_code), key_id, check_key(key), credit_minor=credit_minor)


# --- the radio side ---------------------------------------------------------------------------------


def receive(state: MeterState, frame: bytes, now: int) -> tuple[MeterState, list[bytes]]:
    """Process one reassembled frame from the head end. Returns the new state and the reply frames."""
    try:
        raw = parse_raw_header(frame)
    except ProtocolError:
        return _dropped(state), []
    if raw.meter_code != state.meter_code or raw.type_code & 0x80:
        return _dropped(state), []
    if raw.key_id == state.key_id:
        key = state.key
    elif raw.key_id == state.previous_key_id and state.previous_key is not None:
        key = state.previous_key
    else:
        return _dropped(state), []
    try:
        plaintext = open_frame(frame, raw, key)
    except ProtocolError:
        return _dropped(state), []
    # authentic from here on: every path answers with exactly one Ack
    if raw.key_id == state.key_id and state.previous_key is not None:
        state = replace(state, previous_key=None, previous_key_id=None)  # the head end uses the new key
    t = now + state.clock_offset_s
    state = _settle_tariff(state, t)
    # the reply goes in the profile of the frame it answers, except to a profile the meter does not take
    reply_profile = raw.profile if raw.profile is Profile.BINARY or state.accepts_xml else Profile.BINARY
    try:
        window = state.downlink.check_and_mark(raw.counter)
    except Replayed:
        # the outcome of the first processing: `duplicate` with its reason (none: it took effect then)
        first = next((o for o in state.outcomes if o.counter == raw.counter), None)
        reason = first.reason if first is not None else ReasonCode.NONE
        return _answer(state, raw.counter, raw.type_code, AckResult.DUPLICATE, reason, [], reply_profile)
    except OutsideWindow:
        # below the window: nothing is done, nothing is remembered, the same frame gets the same answer
        reason = ReasonCode.COUNTER_TOO_OLD
        return _answer(state, raw.counter, raw.type_code, AckResult.REJECTED, reason, [], reply_profile)
    state = replace(state, downlink=window)  # from here on the counter is spent, whatever the outcome
    result, reason = AckResult.REJECTED, ReasonCode.NONE
    extra: list[Message] = []
    try:
        mtype = MessageType(raw.type_code)
    except ValueError:
        reason = ReasonCode.UNKNOWN_TYPE
    else:
        header = FrameHeader(raw.version, raw.profile, mtype, raw.key_id, raw.meter_code, raw.counter)
        if header.profile is Profile.XML and not state.accepts_xml:
            reason = ReasonCode.UNSUPPORTED
        else:
            try:
                message = parse_plaintext(header, plaintext)
            except UnknownType:
                reason = ReasonCode.UNKNOWN_TYPE
            except ValueOutOfRange:
                reason = ReasonCode.VALUE_OUT_OF_RANGE
            except (MalformedField, BadXml, Oversize):
                reason = ReasonCode.MALFORMED
            else:
                state, result, reason, extra = _apply(state, message, key, raw.key_id, t)
    outcome = Outcome(raw.counter, result, reason)
    kept = (*(o for o in state.outcomes if o.counter >= window.lowest), outcome)
    state = replace(state, outcomes=kept)
    return _answer(state, raw.counter, raw.type_code, result, reason, extra, reply_profile)


def _dropped(state: MeterState) -> MeterState:
    return replace(state, dropped_frames=state.dropped_frames + 1)


def _answer(
    state: MeterState,
    counter: int,
    type_code: int,
    result: AckResult,
    reason: ReasonCode,
    extra: list[Message],
    profile: Profile,
) -> tuple[MeterState, list[bytes]]:
    ack = Ack(counter, type_code, result, reason, _clamp(state.credit_minor, I64))
    return _send(state, [ack, *extra], profile)


def _send(state: MeterState, messages: list[Message], profile: Profile) -> tuple[MeterState, list[bytes]]:
    """The frames of `messages`, numbered with the next uplink counters, under the current key."""
    frames = []
    counter = state.uplink_counter
    for message in messages:
        counter += 1
        frames.append(
            encode_frame(
                message,
                meter_code=state.meter_code,
                key=state.key,
                key_id=state.key_id,
                counter=counter,
                profile=profile,
            )
        )
    return replace(state, uplink_counter=counter), frames


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


# --- commands ---------------------------------------------------------------------------------------

Applied = tuple[MeterState, AckResult, ReasonCode, list[Message]]


def _apply(state: MeterState, message: Message, key: bytes, key_id: int, t: int) -> Applied:
    """Carry out an authentic command protected with (`key_id`, `key`); the events it causes follow."""
    ok, rejected = AckResult.OK, AckResult.REJECTED
    none = ReasonCode.NONE
    if isinstance(message, TopUp):
        return _top_up(state, message, t)
    if isinstance(message, SetTariff):
        current = [x for x in (state.tariff, state.pending_tariff) if x is not None]
        if message in current:
            return state, AckResult.DUPLICATE, none, []
        if any(message.version <= x.version for x in current):
            return state, rejected, ReasonCode.TARIFF_OUTDATED, []
        state = replace(state, pending_tariff=message)
        return _settle_tariff(state, t), ok, none, []
    if isinstance(message, RelayOff):
        state, events = _set_relay(state, False, message.reason, t)
        return state, ok, none, events
    if isinstance(message, RelayOn):
        if state.tamper_latched:
            return state, rejected, ReasonCode.TAMPER_LATCHED, []
        if state.exhausted:
            return state, rejected, ReasonCode.NO_CREDIT, []
        state, events = _set_relay(state, True, None, t)
        return state, ok, none, events
    if isinstance(message, SetPowerLimit):
        return replace(state, power_limit_w=message.limit_w), ok, none, []
    if isinstance(message, TimeSync):
        offset = message.utc_at - (t - state.clock_offset_s)
        state, event = _event(
            replace(state, clock_offset_s=offset), EventKind.CLOCK_SET, message.utc_at, offset - state.clock_offset_s
        )
        return state, ok, none, [event]
    if isinstance(message, ReadRequest):
        return state, ok, none, _readouts(state, message, t)
    if isinstance(message, KeyChange):
        return _change_key(state, message, key, key_id, t)
    if isinstance(message, Configure):
        alarmed = state.low_credit_alarmed and state.credit_minor <= message.low_credit_minor
        return replace(state, config=message, low_credit_alarmed=alarmed), ok, none, []
    if isinstance(message, ClearTamper):
        return replace(state, tamper_latched=False), ok, none, []
    if isinstance(message, Ping):
        return state, ok, none, []
    return state, rejected, ReasonCode.UNKNOWN_TYPE, []  # a meter -> head end type sent downlink


def _top_up(state: MeterState, message: TopUp, t: int) -> Applied:
    try:
        transfers = state.transfers.check_and_mark(message.transfer_id)
    except Replayed:
        return state, AckResult.DUPLICATE, ReasonCode.NONE, []
    except OutsideWindow:
        return state, AckResult.REJECTED, ReasonCode.TRANSFER_TOO_OLD, []
    credit = state.credit_minor + message.amount_minor
    if credit > I64[1]:
        return state, AckResult.REJECTED, ReasonCode.CREDIT_OVERFLOW, []
    state = replace(
        state,
        transfers=transfers,
        credit_minor=credit,
        last_transfer_id=max(state.last_transfer_id, message.transfer_id),
        low_credit_alarmed=state.low_credit_alarmed and credit <= state.config.low_credit_minor,
        emergency_alarmed=state.emergency_alarmed and credit < 0,
    )
    events: list[Message] = []
    if not state.relay_closed and state.relay_reason is RelayReason.CREDIT and credit > 0:
        state, events = _set_relay(state, True, None, t)
    return state, AckResult.OK, ReasonCode.NONE, events


def _change_key(state: MeterState, message: KeyChange, key: bytes, key_id: int, t: int) -> Applied:
    """§3.3: unwrap under the frame's key first, then the key id. The key that protected the frame is
    kept as the previous key (the head end evidently still uses it); any other key is forgotten."""
    try:
        new_key = unwrap_key(key, message.wrapped_key)
    except KeyUnwrapFailed:
        return state, AckResult.REJECTED, ReasonCode.KEY_UNWRAP_FAILED, []
    if message.new_key_id == state.key_id:
        if new_key == state.key:
            return state, AckResult.DUPLICATE, ReasonCode.NONE, []
        return state, AckResult.REJECTED, ReasonCode.KEY_ID_IN_USE, []
    if message.new_key_id in (key_id, state.previous_key_id):
        return state, AckResult.REJECTED, ReasonCode.KEY_ID_IN_USE, []
    state = replace(state, previous_key_id=key_id, previous_key=key, key_id=message.new_key_id, key=new_key)
    state, event = _event(state, EventKind.KEY_CHANGED, t, message.new_key_id)
    return state, AckResult.OK, ReasonCode.NONE, [event]


def _set_relay(state: MeterState, closed: bool, reason: RelayReason | None, t: int) -> tuple[MeterState, list[Message]]:
    was = state.relay_closed
    state = replace(state, relay_closed=closed, relay_reason=None if closed else reason)
    if was == closed:
        return state, []
    state, event = _event(state, EventKind.RELAY_CHANGED, t, 1 if closed else 0)
    return state, [event]


def _event(state: MeterState, kind: EventKind, t: int, value: int = 0) -> tuple[MeterState, EventReport]:
    event = EventReport(_clamp(t, (0, 0xFFFF_FFFF)), kind, _clamp(value, I32))
    return replace(state, events=(*state.events, event)[-EVENT_LOG:]), event


def _readouts(state: MeterState, request: ReadRequest, t: int) -> list[Message]:
    taken_at = _clamp(t, (0, 0xFFFF_FFFF))
    out: list[Message] = []
    if ReadItems.REGISTERS in request.items:
        out.append(Readings(taken_at, state.import_wh, state.export_wh, state.power_w, NOMINAL_VOLTAGE_DV))
    if ReadItems.BALANCE in request.items:
        out.append(
            BalanceReport(
                taken_at,
                _clamp(state.credit_minor, I64),
                state.relay_closed,
                state.emergency_active,
                state.tariff.version if state.tariff else 0,
                state.last_transfer_id,
            )
        )
    if ReadItems.LOAD_PROFILE in request.items:
        out.append(_load_profile(state, request.profile_since, taken_at))
    return out


def _load_profile(state: MeterState, since: int, taken_at: int) -> LoadProfile:
    """§12: the complete clock hours from the one holding `since` (no earlier than the oldest kept, 48
    hours back) up to the current hour, which is not included (a value sent never changes); Wh per
    hour rounded down; 0 for an hour without use. None complete yet: no intervals, starting now."""
    hour = taken_at - taken_at % 3600
    start = max(since - since % 3600, hour - PROFILE_HOURS * 3600, 0)
    if start >= hour:
        return LoadProfile(hour, 3600, ())
    by_hour = dict(state.profile)
    count = (hour - start) // 3600
    return LoadProfile(start, 3600, tuple(by_hour.get(start + 3600 * i, 0) // 3600 for i in range(count)))


# --- time passing -----------------------------------------------------------------------------------


def _settle_tariff(state: MeterState, t: int) -> MeterState:
    pending = state.pending_tariff
    if pending is not None and pending.effective_at <= t:
        return replace(state, tariff=pending, pending_tariff=None)
    return state


def _local(state: MeterState, t: int) -> int:
    return t + 60 * state.config.utc_offset_min


def is_friendly(state: MeterState, t: int) -> bool:
    """Whether meter time `t` is inside the friendly hours or days (no disconnection then)."""
    config = state.config
    local = _local(state, t)
    weekday = (local // SECONDS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    if config.friendly_days >> weekday & 1:
        return True
    start, end = config.friendly_start_min, config.friendly_end_min
    minute = local % SECONDS_PER_DAY // 60
    if start == end:
        return False
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def _month_index(local: int) -> int:
    days = local // SECONDS_PER_DAY
    # civil-from-days (H. Hinnant), enough for the month number
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year * 12 + month - 1


def price_at(state: MeterState, t: int) -> int:
    """The energy price in force at meter time `t`, in thousandths of a minor unit per kWh."""
    tariff = state.tariff
    if tariff is None:
        return 0
    if tariff.kind is TariffKind.FLAT:
        return tariff.steps[0].price_milli_minor_per_kwh
    position = state.month_import_ws // 3600 if tariff.kind is TariffKind.BLOCK else _local(state, t) % 86_400 // 60
    price = tariff.steps[0].price_milli_minor_per_kwh
    for step in tariff.steps:
        if step.start <= position:
            price = step.price_milli_minor_per_kwh
    return price


def advance(state: MeterState, seconds: int, load_w: int, now: int) -> tuple[MeterState, list[bytes]]:
    """Let `seconds` pass from `now` with a load of `load_w` (while the relay is closed). Consumes
    credit, raises alarms, opens the relay at exhaustion outside friendly hours, and sends due
    periodic reports. Returns the new state and the frames the meter sends."""
    if type(seconds) is not int or seconds < 0:
        raise MalformedField("seconds", f"{seconds!r}: a non-negative integer")
    if type(load_w) is not int or load_w < 0:
        raise MalformedField("load_w", f"{load_w!r}: a non-negative integer")
    t = now + state.clock_offset_s
    end = t + seconds
    state = _settle_tariff(state, t)
    out: list[Message] = []
    while t < end:
        step = min(end - t, SUB_STEP_S - t % SUB_STEP_S)
        state, events = _step(state, t, step, load_w)
        out.extend(events)
        t += step
    if seconds == 0:
        state, events = _check_credit(state, t)
        out.extend(events)
    interval = state.config.report_interval_s
    if interval and end - state.last_report_at >= interval:
        state = replace(state, last_report_at=end)
        out.append(
            PeriodicReport(
                _clamp(end, (0, 0xFFFF_FFFF)),
                state.import_wh,
                state.power_w,
                _clamp(state.credit_minor, I64),
                state.relay_closed,
                state.emergency_active,
                state.tamper_latched,
                state.tariff.version if state.tariff else 0,
            )
        )
    return _send(state, out, state.report_profile)


def _step(state: MeterState, t: int, seconds: int, load_w: int) -> tuple[MeterState, list[Message]]:
    state = _settle_tariff(state, t)
    events: list[Message] = []
    month = _month_index(_local(state, t))
    if month != state.month_index:
        state = replace(state, month_index=month, month_import_ws=0)
    if state.relay_closed and state.power_limit_w and load_w > state.power_limit_w:
        state, event = _event(state, EventKind.POWER_LIMIT_EXCEEDED, t, load_w)
        events.append(event)
        state, changed = _set_relay(state, False, RelayReason.POWER_LIMIT, t)
        events.extend(changed)
    ws = load_w * seconds if state.relay_closed else 0
    energy = state.energy_remainder + ws * price_at(state, t)
    standing = state.standing_remainder + seconds * (state.tariff.standing_charge_minor_per_day if state.tariff else 0)
    hour = t - t % 3600
    profile = state.profile
    if ws:
        if profile and profile[-1][0] == hour:
            profile = (*profile[:-1], (hour, profile[-1][1] + ws))
        else:
            profile = (*profile, (hour, ws))[-(PROFILE_HOURS + 1) :]  # 48 complete hours and the current one
    state = replace(
        state,
        credit_minor=state.credit_minor - energy // WS_PER_KWH_MILLI - standing // SECONDS_PER_DAY,
        energy_remainder=energy % WS_PER_KWH_MILLI,
        standing_remainder=standing % SECONDS_PER_DAY,
        import_ws=state.import_ws + ws,
        month_import_ws=state.month_import_ws + ws,
        power_w=load_w if state.relay_closed else 0,
        profile=profile,
    )
    state, more = _check_credit(state, t + seconds)
    return state, events + more


def _check_credit(state: MeterState, t: int) -> tuple[MeterState, list[Message]]:
    events: list[Message] = []
    credit = state.credit_minor
    threshold = state.config.low_credit_minor
    if threshold and credit <= threshold and not state.low_credit_alarmed:
        state, event = _event(replace(state, low_credit_alarmed=True), EventKind.LOW_CREDIT, t, credit)
        events.append(event)
    if credit < 0 and not state.exhausted and not state.emergency_alarmed:
        state, event = _event(replace(state, emergency_alarmed=True), EventKind.EMERGENCY_CREDIT, t, credit)
        events.append(event)
    if state.exhausted and state.relay_closed and not is_friendly(state, t):
        state, event = _event(state, EventKind.CREDIT_EXHAUSTED, t, credit)
        events.append(event)
        state, changed = _set_relay(state, False, RelayReason.CREDIT, t)
        events.extend(changed)
    return state, events


def raise_event(state: MeterState, kind: EventKind, now: int, value: int = 0) -> tuple[MeterState, list[bytes]]:
    """Something physical happened (tamper, magnetic field, cover open, outage, ...): log and report it.
    Tamper, magnetic field and cover open latch the tamper flag until ClearTamper."""
    t = now + state.clock_offset_s
    if kind in (EventKind.TAMPER, EventKind.MAGNETIC_FIELD, EventKind.COVER_OPEN):
        state = replace(state, tamper_latched=True)
    state, event = _event(state, kind, t, value)
    return _send(state, [event], state.report_profile)
