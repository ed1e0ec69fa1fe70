"""The conformance checklist (docs/protocol.md §14): what a head end sends a meter under test, and what
a conforming meter must answer, line by line.

Pure. A `Bench` is the head end's view of the meter under test (its code, the keys it was given, the
counters and transfer ids used so far, the credit it last reported). Each `Line` of `CHECKLIST` builds
its `Exchange`s from the bench when its turn comes: a frame to send and the replies expected (none for
a frame the meter must drop). `check` opens the replies, compares them with the expectation and lets
the bench learn from them. A driver sends the frames: `run_reference` drives the reference meter (the
golden vectors tests/vectors/conformance_*.json are its run), `smsmeter conformance` drives a meter over
SMS. Lines follow one another on the same meter, so run them in order, from the first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meter_protocol.documents import compress_document, message_to_xml
from meter_protocol.errors import ProtocolError
from meter_protocol.frame import Profile, decode_frame, encode_frame, peek_header, seal_frame
from meter_protocol.keys import derive_meter_key, wrap_key
from meter_protocol.messages import (
    Ack,
    AckResult,
    BalanceReport,
    ClearTamper,
    Configure,
    Direction,
    EventKind,
    KeyChange,
    LoadProfile,
    Message,
    MessageType,
    Ping,
    ReadItems,
    ReadRequest,
    ReasonCode,
    RelayOff,
    RelayOn,
    RelayReason,
    SetPowerLimit,
    SetTariff,
    TariffKind,
    TariffStep,
    TimeSync,
    TopUp,
)
from meter_protocol.meter_code import meter_code_with_check_digit
from meter_protocol.reference_meter import MeterState, receive
from meter_protocol.replay import ReplayWindow

UNKNOWN_DOWNLINK_TYPE = 0x0C


@dataclass(frozen=True, slots=True)
class Expect:
    """One reply: its type, the fields that must have these values (the others are free), and the key
    id and profile its header must carry."""

    message_type: MessageType
    fields: Mapping[str, Any]
    key_id: int
    profile: Profile = Profile.BINARY


@dataclass(frozen=True, slots=True)
class Exchange:
    """A frame the head end sends and the replies it must get, in the meter's counter order; none for
    a frame the meter must drop."""

    note: str
    frame: bytes
    expect: tuple[Expect, ...]


@dataclass(slots=True)
class Bench:
    """The head end's side of a conformance run. `key_seed` makes the new keys of the key-change lines
    (derived with §3.2, so a run can be repeated); `xml`: whether the meter takes the XML profile."""

    meter_code: str
    key_id: int
    key: bytes
    key_seed: bytes
    xml: bool = True
    next_counter: int = 1
    next_transfer_id: int = 1
    next_tariff_version: int = 1
    credit_minor: int = 0
    keys: dict[int, bytes] = field(default_factory=dict)
    uplink: ReplayWindow = field(default_factory=ReplayWindow)

    def __post_init__(self) -> None:
        self.keys.setdefault(self.key_id, self.key)

    def counter(self) -> int:
        value = self.next_counter
        self.next_counter += 1
        return value

    def transfer(self) -> int:
        value = self.next_transfer_id
        self.next_transfer_id += 1
        return value

    def seal(
        self,
        message: Message,
        *,
        counter: int | None = None,
        key_id: int | None = None,
        profile: Profile = Profile.BINARY,
    ) -> tuple[bytes, int]:
        """The frame of `message` under the bench's current key (or the key of `key_id`), and its counter."""
        used = self.counter() if counter is None else counter
        kid = self.key_id if key_id is None else key_id
        frame = encode_frame(
            message, meter_code=self.meter_code, key=self.keys[kid], key_id=kid, counter=used, profile=profile
        )
        return frame, used

    def seal_raw(self, type_code: int, payload: bytes, *, profile: Profile = Profile.BINARY) -> tuple[bytes, int]:
        used = self.counter()
        frame = seal_frame(
            type_code,
            payload,
            meter_code=self.meter_code,
            key=self.key,
            key_id=self.key_id,
            counter=used,
            profile=profile,
        )
        return frame, used

    def ack(
        self,
        counter: int,
        type_code: int,
        result: AckResult = AckResult.OK,
        reason: ReasonCode = ReasonCode.NONE,
        *,
        profile: Profile = Profile.BINARY,
        credit: bool = True,
    ) -> Expect:
        fields: dict[str, Any] = {"acked_counter": counter, "acked_type": int(type_code), "result": result}
        fields["reason"] = reason
        if credit:
            fields["credit_minor"] = self.credit_minor
        return Expect(MessageType.ACK, fields, self.key_id, profile)

    def event(self, kind: EventKind, value: int | None = None, *, profile: Profile = Profile.BINARY) -> Expect:
        fields: dict[str, Any] = {"event": kind}
        if value is not None:
            fields["value"] = value
        return Expect(MessageType.EVENT_REPORT, fields, self.key_id, profile)

    def new_key(self, key_id: int) -> bytes:
        key = derive_meter_key(self.key_seed, self.meter_code, key_id)
        self.keys[key_id] = key
        return key

    def observe(self, message: Message) -> None:
        """Learn the meter's balance, transfers and tariff from what it reports."""
        if isinstance(message, Ack | BalanceReport):
            self.credit_minor = message.credit_minor
        if isinstance(message, BalanceReport):
            self.next_transfer_id = max(self.next_transfer_id, message.last_transfer_id + 1)
            self.next_tariff_version = max(self.next_tariff_version, message.tariff_version + 1)


Build = Callable[[Bench, int], list[Exchange]]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the checklist; `build(bench, now)` makes its exchanges when its turn comes."""

    id: str
    title: str
    section: str
    build: Build


def check(bench: Bench, exchange: Exchange, replies: list[bytes]) -> list[str]:
    """What is wrong with the meter's `replies` to `exchange` (empty: the exchange passed). Replies are
    opened with the bench's keys by their key id and checked against its uplink replay window, then
    compared with the expectation in counter order; the bench learns from each one."""
    problems: list[str] = []
    opened: list[tuple[int, Profile, int, Message]] = []
    for frame in replies:
        try:
            header = peek_header(frame)
            key = bench.keys.get(header.key_id)
            if key is None:
                problems.append(f"a reply under key id {header.key_id}, which the meter was never given")
                continue
            decoded = decode_frame(
                frame, key=key, window=bench.uplink, meter_code=bench.meter_code, direction=Direction.UPLINK
            )
        except ProtocolError as exc:
            problems.append(f"a reply that does not open: {exc.reason}")
            continue
        assert decoded.window is not None
        bench.uplink = decoded.window
        opened.append((header.counter, header.profile, header.key_id, decoded.message))
    opened.sort(key=lambda item: item[0])
    for _, _, _, message in opened:
        bench.observe(message)
    got = [message.message_type.name.lower() for _, _, _, message in opened]
    wanted = [e.message_type.name.lower() for e in exchange.expect]
    if got != wanted:
        problems.append(f"replies {got or 'none'}, expected {wanted or 'none'}")
        return problems
    for (_, profile, key_id, message), expect in zip(opened, exchange.expect, strict=True):
        name = message.message_type.name.lower()
        for field_name, value in expect.fields.items():
            actual = getattr(message, field_name)
            if actual != value:
                problems.append(f"{name} {field_name} = {_show(actual)}, expected {_show(value)}")
        if key_id != expect.key_id:
            problems.append(f"{name} under key id {key_id}, expected {expect.key_id}")
        if profile is not expect.profile:
            problems.append(f"{name} in the {profile.name.lower()} profile, expected {expect.profile.name.lower()}")
    return problems


def _show(value: Any) -> str:
    return value.name.lower() if hasattr(value, "name") else str(value)


# --- the lines --------------------------------------------------------------------------------------


def _ping(bench: Bench, now: int) -> list[Exchange]:
    frame, n = bench.seal(Ping())
    return [Exchange("ping", frame, (bench.ack(n, MessageType.PING, credit=False),))]


def _balance(bench: Bench, now: int) -> list[Exchange]:
    frame, n = bench.seal(ReadRequest(ReadItems.BALANCE, 0))
    ack = bench.ack(n, MessageType.READ_REQUEST, credit=False)
    report = Expect(MessageType.BALANCE_REPORT, {}, bench.key_id)
    return [Exchange("read the balance (the bench learns credit, transfer id and tariff)", frame, (ack, report))]


def _dropped(bench: Bench, now: int) -> list[Exchange]:
    genuine, n = bench.seal(Ping())
    tampered = genuine[:-9] + bytes([genuine[-9] ^ 0x01]) + genuine[-8:]
    other = _other_meter(bench.meter_code)
    for_other = encode_frame(Ping(), meter_code=other, key=bench.key, key_id=bench.key_id, counter=n)
    stranger_id = (bench.key_id + 128) % 256
    unknown_key = encode_frame(
        Ping(), meter_code=bench.meter_code, key=bytes(16), key_id=stranger_id, counter=bench.counter()
    )
    uplink = seal_frame(
        MessageType.ACK,
        bytes(15),
        meter_code=bench.meter_code,
        key=bench.key,
        key_id=bench.key_id,
        counter=bench.counter(),
    )
    return [
        Exchange("a ping with one ciphertext byte changed", tampered, ()),
        Exchange(f"a ping for meter {other}", for_other, ()),
        Exchange(f"a ping under key id {stranger_id}, never given", unknown_key, ()),
        Exchange("a frame with an uplink type (ack)", uplink, ()),
        Exchange("the genuine ping with the counter of the changed one", genuine, (bench.ack(n, MessageType.PING),)),
    ]


def _other_meter(code: str) -> str:
    body = code[:-1]
    return meter_code_with_check_digit(body[:-1] + str((int(body[-1]) + 1) % 10))


def _top_up(bench: Bench, now: int) -> list[Exchange]:
    transfer, amount = bench.transfer(), 50_000
    first, n1 = bench.seal(TopUp(transfer, amount))
    before = bench.credit_minor
    bench.credit_minor = before + amount
    again, n2 = bench.seal(TopUp(transfer, amount))
    out = [
        Exchange(f"top-up of {amount}, transfer {transfer}", first, (bench.ack(n1, MessageType.TOP_UP),)),
        Exchange("the same frame again", first, (bench.ack(n1, MessageType.TOP_UP, AckResult.DUPLICATE),)),
        Exchange(
            "the same transfer under a new counter", again, (bench.ack(n2, MessageType.TOP_UP, AckResult.DUPLICATE),)
        ),
        Exchange(
            "that frame again: its first outcome was duplicate",
            again,
            (bench.ack(n2, MessageType.TOP_UP, AckResult.DUPLICATE),),
        ),
    ]
    return out


def _transfer_too_old(bench: Bench, now: int) -> list[Exchange]:
    old = bench.transfer()
    bench.next_transfer_id += 69
    newest = bench.transfer()
    ahead, n1 = bench.seal(TopUp(newest, 100))
    bench.credit_minor += 100
    late, n2 = bench.seal(TopUp(old, 100))
    return [
        Exchange(f"top-up of 100, transfer {newest}", ahead, (bench.ack(n1, MessageType.TOP_UP),)),
        Exchange(
            f"top-up of 100, transfer {old}: 70 below the highest",
            late,
            (bench.ack(n2, MessageType.TOP_UP, AckResult.REJECTED, ReasonCode.TRANSFER_TOO_OLD),),
        ),
    ]


def _unknown_type(bench: Bench, now: int) -> list[Exchange]:
    frame, n = bench.seal_raw(UNKNOWN_DOWNLINK_TYPE, b"")
    return [
        Exchange(
            f"type 0x{UNKNOWN_DOWNLINK_TYPE:02X}, empty payload",
            frame,
            (bench.ack(n, UNKNOWN_DOWNLINK_TYPE, AckResult.REJECTED, ReasonCode.UNKNOWN_TYPE),),
        ),
        Exchange(
            "the same frame again: its counter is spent",
            frame,
            (bench.ack(n, UNKNOWN_DOWNLINK_TYPE, AckResult.DUPLICATE, ReasonCode.UNKNOWN_TYPE),),
        ),
    ]


def _malformed(bench: Bench, now: int) -> list[Exchange]:
    short, n1 = bench.seal_raw(MessageType.TOP_UP, bytes.fromhex("00000000000007d1000001"))
    bad_enum, n2 = bench.seal_raw(MessageType.RELAY_OFF, b"\x00")
    tariff = bytes.fromhex("0001000000000000000000020000000000002328")
    bad_count, n3 = bench.seal_raw(MessageType.SET_TARIFF, tariff)
    rejected, malformed = AckResult.REJECTED, ReasonCode.MALFORMED
    return [
        Exchange("a top-up payload of 11 bytes", short, (bench.ack(n1, MessageType.TOP_UP, rejected, malformed),)),
        Exchange("relay_off with reason 0", bad_enum, (bench.ack(n2, MessageType.RELAY_OFF, rejected, malformed),)),
        Exchange(
            "set_tariff counting 2 steps and carrying 1",
            bad_count,
            (bench.ack(n3, MessageType.SET_TARIFF, rejected, malformed),),
        ),
    ]


def _out_of_range(bench: Bench, now: int) -> list[Exchange]:
    rejected, out_of_range = AckResult.REJECTED, ReasonCode.VALUE_OUT_OF_RANGE
    amount_zero, n1 = bench.seal_raw(MessageType.TOP_UP, bench.next_transfer_id.to_bytes(8, "big") + bytes(4))
    minute = bytes(8) + (1440).to_bytes(2, "big") + bytes(9)
    late_minute, n2 = bench.seal_raw(MessageType.CONFIGURE, minute)
    steps = bytes.fromhex("000100000000010000000002000003e8000023280000000000002328")
    unordered, n3 = bench.seal_raw(MessageType.SET_TARIFF, steps)
    no_items, n4 = bench.seal_raw(MessageType.READ_REQUEST, bytes(5))
    return [
        Exchange("a top-up of 0", amount_zero, (bench.ack(n1, MessageType.TOP_UP, rejected, out_of_range),)),
        Exchange(
            "configure with friendly hours from minute 1440",
            late_minute,
            (bench.ack(n2, MessageType.CONFIGURE, rejected, out_of_range),),
        ),
        Exchange(
            "a block tariff whose steps start at 1000 then 0",
            unordered,
            (bench.ack(n3, MessageType.SET_TARIFF, rejected, out_of_range),),
        ),
        Exchange(
            "read_request with no item", no_items, (bench.ack(n4, MessageType.READ_REQUEST, rejected, out_of_range),)
        ),
    ]


def _counter_below_window(bench: Bench, now: int) -> list[Exchange]:
    bench.next_counter += 40
    ahead, high = bench.seal(Ping())
    old, n = bench.seal(Ping(), counter=high - 32)
    too_old = bench.ack(n, MessageType.PING, AckResult.REJECTED, ReasonCode.COUNTER_TOO_OLD)
    return [
        Exchange(f"a ping with counter {high}, 40 ahead", ahead, (bench.ack(high, MessageType.PING),)),
        Exchange(f"a ping with counter {n}, 32 below the highest", old, (too_old,)),
        Exchange("the same frame again: nothing was spent, the same answer", old, (too_old,)),
    ]


def _relay(bench: Bench, now: int) -> list[Exchange]:
    off, n1 = bench.seal(RelayOff(RelayReason.OPERATOR))
    off_again, n2 = bench.seal(RelayOff(RelayReason.OPERATOR))
    on, n3 = bench.seal(RelayOn(RelayReason.OPERATOR))
    return [
        Exchange("relay_off", off, (bench.ack(n1, MessageType.RELAY_OFF), bench.event(EventKind.RELAY_CHANGED, 0))),
        Exchange("relay_off while open: no event", off_again, (bench.ack(n2, MessageType.RELAY_OFF),)),
        Exchange(
            "relay_on with credit", on, (bench.ack(n3, MessageType.RELAY_ON), bench.event(EventKind.RELAY_CHANGED, 1))
        ),
    ]


def _tariff(bench: Bench, now: int) -> list[Exchange]:
    version = bench.next_tariff_version
    bench.next_tariff_version += 2

    def tariff(v: int) -> SetTariff:
        return SetTariff(v, 0, TariffKind.FLAT, 0, (TariffStep(0, 0),))

    older, n1 = bench.seal(tariff(version))
    newer, n2 = bench.seal(tariff(version + 1))
    same, n3 = bench.seal(tariff(version + 1))
    late, n4 = bench.seal(tariff(version))
    return [
        Exchange(f"tariff version {version}", older, (bench.ack(n1, MessageType.SET_TARIFF),)),
        Exchange(f"tariff version {version + 1}", newer, (bench.ack(n2, MessageType.SET_TARIFF),)),
        Exchange(
            "the same tariff under a new counter",
            same,
            (bench.ack(n3, MessageType.SET_TARIFF, AckResult.DUPLICATE),),
        ),
        Exchange(
            f"tariff version {version} again: older than the active one",
            late,
            (bench.ack(n4, MessageType.SET_TARIFF, AckResult.REJECTED, ReasonCode.TARIFF_OUTDATED),),
        ),
    ]


def _settings(bench: Bench, now: int) -> list[Exchange]:
    sync, n1 = bench.seal(TimeSync(now))
    limit, n2 = bench.seal(SetPowerLimit(0))
    configure, n3 = bench.seal(Configure(0, 0))
    clear, n4 = bench.seal(ClearTamper())
    return [
        Exchange("time_sync", sync, (bench.ack(n1, MessageType.TIME_SYNC), bench.event(EventKind.CLOCK_SET))),
        Exchange("set_power_limit 0 (none)", limit, (bench.ack(n2, MessageType.SET_POWER_LIMIT),)),
        Exchange(
            "configure: no alarms, no emergency credit, no reports", configure, (bench.ack(n3, MessageType.CONFIGURE),)
        ),
        Exchange("clear_tamper", clear, (bench.ack(n4, MessageType.CLEAR_TAMPER),)),
    ]


def _readout(bench: Bench, now: int) -> list[Exchange]:
    items = ReadItems.REGISTERS | ReadItems.BALANCE | ReadItems.LOAD_PROFILE
    frame, n = bench.seal(ReadRequest(items, now - 3 * 3600))
    return [
        Exchange(
            "read_request: registers, balance, load profile of the last 3 hours",
            frame,
            (
                bench.ack(n, MessageType.READ_REQUEST),
                Expect(MessageType.READINGS, {"export_wh": 0}, bench.key_id),
                Expect(MessageType.BALANCE_REPORT, {"credit_minor": bench.credit_minor}, bench.key_id),
                Expect(MessageType.LOAD_PROFILE, {"interval_s": 3600}, bench.key_id),
            ),
        )
    ]


def _xml(bench: Bench, now: int) -> list[Exchange]:
    xml = Profile.XML
    transfer = bench.transfer()
    top_up, n1 = bench.seal(TopUp(transfer, 100), profile=xml)
    invalid = compress_document(b'<ping xmlns="urn:smsmeter:protocol:1" count="0"/>')
    bad, n2 = bench.seal_raw(MessageType.PING, invalid, profile=xml)
    if not bench.xml:
        unsupported = ReasonCode.UNSUPPORTED
        bench.next_transfer_id -= 1
        return [
            Exchange(
                "a top-up in the XML profile to a meter without it",
                top_up,
                (bench.ack(n1, MessageType.TOP_UP, AckResult.REJECTED, unsupported),),
            ),
            Exchange("an XML ping", bad, (bench.ack(n2, MessageType.PING, AckResult.REJECTED, unsupported),)),
        ]
    bench.credit_minor += 100
    load = LoadProfile(now - now % 3600, 3600, ())
    empty = compress_document(message_to_xml(load, compact=True))
    uplink = seal_frame(
        MessageType.LOAD_PROFILE,
        empty,
        meter_code=bench.meter_code,
        key=bench.key,
        key_id=bench.key_id,
        counter=bench.counter(),
        profile=xml,
    )
    return [
        Exchange(
            "a top-up in the XML profile: the ack in XML", top_up, (bench.ack(n1, MessageType.TOP_UP, profile=xml),)
        ),
        Exchange(
            "an XML ping with an attribute the schema does not have",
            bad,
            (bench.ack(n2, MessageType.PING, AckResult.REJECTED, ReasonCode.MALFORMED, profile=xml),),
        ),
        Exchange("an uplink type in the XML profile", uplink, ()),
    ]


def _key_change(bench: Bench, now: int) -> list[Exchange]:
    old_id, old_key = bench.key_id, bench.key
    new_id = (old_id + 1) % 256
    new_key = bench.new_key(new_id)
    change, n1 = bench.seal(KeyChange(new_id, wrap_key(old_key, new_key)))
    bench.key_id, bench.key = new_id, new_key  # the meter answers under the new key from the ack on
    via_old, n2 = bench.seal(Ping(), key_id=old_id)
    via_new, n3 = bench.seal(Ping())
    old_again, _ = bench.seal(Ping(), key_id=old_id)
    repeat, n4 = bench.seal(KeyChange(new_id, wrap_key(new_key, new_key)))
    clash, n5 = bench.seal(KeyChange(new_id, wrap_key(new_key, bytes(16))))
    broken = bytearray(wrap_key(new_key, old_key))
    broken[0] ^= 0x01
    garbled, n6 = bench.seal(KeyChange((new_id + 1) % 256, bytes(broken)))
    return [
        Exchange(
            f"key_change to key id {new_id}",
            change,
            (bench.ack(n1, MessageType.KEY_CHANGE), bench.event(EventKind.KEY_CHANGED, new_id)),
        ),
        Exchange(f"a ping under the old key {old_id}, still kept", via_old, (bench.ack(n2, MessageType.PING),)),
        Exchange(f"a ping under the new key {new_id}", via_new, (bench.ack(n3, MessageType.PING),)),
        Exchange("a ping under the old key once the new one was used", old_again, ()),
        Exchange(
            "key_change to the key in force", repeat, (bench.ack(n4, MessageType.KEY_CHANGE, AckResult.DUPLICATE),)
        ),
        Exchange(
            "key_change to the id in force with another key",
            clash,
            (bench.ack(n5, MessageType.KEY_CHANGE, AckResult.REJECTED, ReasonCode.KEY_ID_IN_USE),),
        ),
        Exchange(
            "key_change whose wrapped key fails its check",
            garbled,
            (bench.ack(n6, MessageType.KEY_CHANGE, AckResult.REJECTED, ReasonCode.KEY_UNWRAP_FAILED),),
        ),
    ]


def _second_key_change(bench: Bench, now: int) -> list[Exchange]:
    kept_id, kept_key = bench.key_id, bench.key
    first_id, second_id = (kept_id + 1) % 256, (kept_id + 2) % 256
    first_key, second_key = bench.new_key(first_id), bench.new_key(second_id)
    first, n1 = bench.seal(KeyChange(first_id, wrap_key(kept_key, first_key)))
    bench.key_id, bench.key = first_id, first_key
    first_replies = (bench.ack(n1, MessageType.KEY_CHANGE), bench.event(EventKind.KEY_CHANGED, first_id))
    profile = Profile.XML if bench.xml else Profile.BINARY
    second_message = KeyChange(second_id, wrap_key(kept_key, second_key))
    if bench.xml:  # in XML, with the hexadecimal in upper case, which a reader accepts
        document = message_to_xml(second_message, compact=True)
        document = document.replace(
            second_message.wrapped_key.hex().encode(), second_message.wrapped_key.hex().upper().encode()
        )
        n2 = bench.counter()
        second = seal_frame(
            MessageType.KEY_CHANGE,
            compress_document(document),
            meter_code=bench.meter_code,
            key=kept_key,
            key_id=kept_id,
            counter=n2,
            profile=profile,
        )
    else:
        second, n2 = bench.seal(second_message, key_id=kept_id)
    bench.key_id, bench.key = second_id, second_key
    via_first, _ = bench.seal(Ping(), key_id=first_id)
    via_kept, n3 = bench.seal(Ping(), key_id=kept_id)
    via_second, n4 = bench.seal(Ping())
    kept_again, _ = bench.seal(Ping(), key_id=kept_id)
    return [
        Exchange(
            f"key_change to key id {first_id}",
            first,
            first_replies,
        ),
        Exchange(
            f"before key {first_id} is used, key_change to key id {second_id} under the kept key {kept_id}",
            second,
            (
                bench.ack(n2, MessageType.KEY_CHANGE, profile=profile),
                bench.event(EventKind.KEY_CHANGED, second_id, profile=profile),
            ),
        ),
        Exchange(f"a ping under key {first_id}: forgotten", via_first, ()),
        Exchange(f"a ping under the kept key {kept_id}", via_kept, (bench.ack(n3, MessageType.PING),)),
        Exchange(f"a ping under key {second_id}", via_second, (bench.ack(n4, MessageType.PING),)),
        Exchange(f"a ping under key {kept_id} once key {second_id} was used", kept_again, ()),
    ]


CHECKLIST: tuple[Line, ...] = (
    Line("C01", "an authentic frame gets one ack", "§7.4", _ping),
    Line("C02", "balance readout", "§6.2 0x07, 0x83", _balance),
    Line("C03", "what does not authenticate is dropped, and spends no counter", "§7.4", _dropped),
    Line("C04", "a top-up is credited once; a replayed counter repeats its first outcome", "§7.3, §7.4", _top_up),
    Line("C05", "a transfer id below the transfer window is refused", "§7.3", _transfer_too_old),
    Line("C06", "an unknown downlink type is refused and its counter spent", "§5.1", _unknown_type),
    Line("C07", "a payload that does not parse is malformed", "§6", _malformed),
    Line("C08", "a value the protocol excludes is value_out_of_range", "§6", _out_of_range),
    Line("C09", "a counter below the window is refused and not spent", "§7.2", _counter_below_window),
    Line("C10", "relay commands and their events", "§12.1", _relay),
    Line("C11", "tariff versions: newer applies, equal is a duplicate, older is refused", "§6.1", _tariff),
    Line("C12", "time_sync, set_power_limit, configure, clear_tamper", "§12.1", _settings),
    Line("C13", "readout: readings, balance and load profile follow the ack in order", "§12.2", _readout),
    Line("C14", "the XML profile: replies in the profile of the command", "§11.3", _xml),
    Line("C15", "key change: the old key stays until the new one is used", "§3.3", _key_change),
    Line("C16", "a second key change under the kept key", "§3.3", _second_key_change),
)


@dataclass(frozen=True, slots=True)
class ExchangeRun:
    exchange: Exchange
    replies: tuple[bytes, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LineRun:
    line: Line
    exchanges: tuple[ExchangeRun, ...]

    @property
    def passed(self) -> bool:
        return not any(run.problems for run in self.exchanges)


def run_lines(send: Callable[[bytes], list[bytes]], bench: Bench, now: int) -> list[LineRun]:
    """The checklist run through `send` (a frame to the meter under test -> its replies)."""
    runs = []
    for line in CHECKLIST:
        done = []
        for exchange in line.build(bench, now):
            replies = send(exchange.frame)
            done.append(ExchangeRun(exchange, tuple(replies), tuple(check(bench, exchange, replies))))
        runs.append(LineRun(line, tuple(done)))
    return runs


def run_reference(state: MeterState, bench: Bench, now: int) -> tuple[MeterState, list[LineRun]]:
    """The checklist run against the reference meter `state` (its clock standing at `now`)."""
    meter = [state]

    def send(frame: bytes) -> list[bytes]:
        meter[0], replies = receive(meter[0], frame, now)
        return replies

    runs = run_lines(send, bench, now)
    return meter[0], runs


__all__ = [
    "CHECKLIST",
    "Bench",
    "Exchange",
    "ExchangeRun",
    "Expect",
    "Line",
    "LineRun",
    "check",
    "run_lines",
    "run_reference",
]
