"""The reference meter: exactly-once top-ups, acknowledgements, credit, relay, keys (docs/protocol.md §12)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meter_protocol import (
    Ack,
    AckResult,
    BalanceReport,
    ClearTamper,
    Configure,
    Direction,
    EventKind,
    EventReport,
    KeyChange,
    LoadProfile,
    Message,
    PeriodicReport,
    Ping,
    Profile,
    Readings,
    ReadItems,
    ReadRequest,
    ReasonCode,
    RelayOff,
    RelayOn,
    RelayReason,
    ReplayWindow,
    SetPowerLimit,
    SetTariff,
    TariffKind,
    TariffStep,
    TimeSync,
    TopUp,
    decode_frame,
    encode_frame,
    wrap_key,
)
from meter_protocol.reference_meter import MeterState, advance, is_friendly, new_meter, price_at, raise_event, receive
from tests.unit.protocol.samples import KEY, METER_CODE, NEW_KEY, OTHER_KEY, OTHER_METER_CODE, T0

FLAT = SetTariff(1, 0, TariffKind.FLAT, 0, (TariffStep(0, 100_000),))  # 100 minor units per kWh


class HeadEnd:
    """Just enough of a head end: seals commands with fresh counters, opens the meter's replies."""

    def __init__(self, key: bytes = KEY, key_id: int = 0) -> None:
        self.key, self.key_id, self.counter = key, key_id, 0
        self.window = ReplayWindow()

    def seal(self, message: Message, counter: int | None = None, profile: Profile = Profile.BINARY) -> bytes:
        if counter is None:
            self.counter += 1
            counter = self.counter
        return encode_frame(
            message, meter_code=METER_CODE, key=self.key, key_id=self.key_id, counter=counter, profile=profile
        )

    def open(self, frames: list[bytes], key: bytes | None = None) -> list[Message]:
        out = []
        for frame in frames:
            decoded = decode_frame(
                frame, key=key or self.key, window=self.window, meter_code=METER_CODE, direction=Direction.UPLINK
            )
            assert decoded.window is not None
            self.window = decoded.window
            out.append(decoded.message)
        return out


def _meter(credit_minor: int = 10_000) -> MeterState:
    return replace(new_meter(METER_CODE, KEY, credit_minor=credit_minor), tariff=FLAT)


def _only_ack(messages: list[Message]) -> Ack:
    assert isinstance(messages[0], Ack)
    return messages[0]


def test_a_top_up_is_credited_once_however_often_it_arrives() -> None:
    head, meter = HeadEnd(), _meter(0)
    frame = head.seal(TopUp(transfer_id=1, amount_minor=5_000))
    meter, replies = receive(meter, frame, T0)
    ack = _only_ack(head.open(replies))
    assert (ack.acked_counter, ack.acked_type, ack.result, ack.credit_minor) == (1, 0x01, AckResult.OK, 5_000)
    # the same SMS again (a duplicate from the SMSC, a retry)
    meter, replies = receive(meter, frame, T0 + 5)
    ack = _only_ack(head.open(replies))
    assert (ack.result, ack.reason, ack.credit_minor) == (AckResult.DUPLICATE, ReasonCode.NONE, 5_000)
    # the same transfer re-issued under a new counter
    meter, replies = receive(meter, head.seal(TopUp(transfer_id=1, amount_minor=5_000)), T0 + 10)
    ack = _only_ack(head.open(replies))
    assert (ack.acked_counter, ack.result, ack.credit_minor) == (2, AckResult.DUPLICATE, 5_000)
    assert meter.credit_minor == 5_000


def test_top_ups_in_flight_may_arrive_out_of_order() -> None:
    head, meter = HeadEnd(), _meter(0)
    frames = [head.seal(TopUp(transfer_id=10 + i, amount_minor=100)) for i in range(5)]
    for frame in reversed(frames):
        meter, replies = receive(meter, frame, T0)
        assert _only_ack(head.open(replies)).result is AckResult.OK
    assert meter.credit_minor == 500
    assert meter.last_transfer_id == 14


def test_a_transfer_too_old_is_rejected_not_credited() -> None:
    head, meter = HeadEnd(), _meter(0)
    meter, _ = receive(meter, head.seal(TopUp(transfer_id=1_000, amount_minor=100)), T0)
    meter, replies = receive(meter, head.seal(TopUp(transfer_id=900, amount_minor=100)), T0)
    ack = _only_ack(head.open(replies)[-1:])
    assert (ack.result, ack.reason) == (AckResult.REJECTED, ReasonCode.TRANSFER_TOO_OLD)
    assert meter.credit_minor == 100


def test_a_counter_below_the_window_is_rejected_so_the_head_end_reissues() -> None:
    head, meter = HeadEnd(), _meter()
    old = head.seal(Ping(), counter=1)
    meter, _ = receive(meter, head.seal(Ping(), counter=100), T0)
    meter, replies = receive(meter, old, T0)
    ack = _only_ack(head.open(replies)[-1:])
    assert (ack.acked_counter, ack.result, ack.reason) == (1, AckResult.REJECTED, ReasonCode.COUNTER_TOO_OLD)


def test_a_duplicate_repeats_the_first_outcome_as_its_reason() -> None:
    head, meter = HeadEnd(), _meter()
    meter = replace(meter, tariff=replace(FLAT, version=9))
    frame = head.seal(replace(FLAT, version=2))
    meter, replies = receive(meter, frame, T0)
    assert _only_ack(head.open(replies)).reason is ReasonCode.TARIFF_OUTDATED
    meter, replies = receive(meter, frame, T0)
    ack = _only_ack(head.open(replies))
    assert (ack.result, ack.reason) == (AckResult.DUPLICATE, ReasonCode.TARIFF_OUTDATED)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01" * 40,
        encode_frame(Ping(), meter_code=METER_CODE, key=OTHER_KEY, key_id=0, counter=1),
        encode_frame(Ping(), meter_code=METER_CODE, key=KEY, key_id=5, counter=1),
        encode_frame(Ping(), meter_code=OTHER_METER_CODE, key=KEY, key_id=0, counter=1),
        encode_frame(EventReport(T0, EventKind.TAMPER), meter_code=METER_CODE, key=KEY, key_id=0, counter=1),
    ],
)
def test_what_does_not_authenticate_is_dropped_without_a_reply(frame: bytes) -> None:
    meter = _meter()
    after, replies = receive(meter, frame, T0)
    assert replies == []
    assert after == replace(meter, dropped_frames=1)


def test_an_authentic_but_malformed_payload_is_rejected_and_its_counter_spent() -> None:
    head, meter = HeadEnd(), _meter()
    frame = encode_frame(Ping(), meter_code=METER_CODE, key=KEY, key_id=0, counter=3)
    # seal a payload that does not parse as a Ping (one stray byte), same header
    from meter_protocol.frame import HEADER_BYTES, nonce_for
    from meter_protocol.keys import aead_for

    header = frame[:HEADER_BYTES]
    bad = header + aead_for(KEY).encrypt(nonce_for(header[4:13], Direction.DOWNLINK, 3), b"\x00", header)
    meter, replies = receive(meter, bad, T0)
    ack = _only_ack(head.open(replies))
    assert (ack.result, ack.reason) == (AckResult.REJECTED, ReasonCode.MALFORMED)
    assert meter.downlink.seen(3)


def test_credit_runs_down_alarms_and_the_relay_opens_at_zero() -> None:
    head, meter = HeadEnd(), _meter(credit_minor=1_000)
    meter, _ = receive(meter, head.seal(Configure(low_credit_minor=500, emergency_credit_minor=0)), T0)
    # 1 kW for 6 h = 6 kWh = 600 minor
    meter, replies = advance(meter, 6 * 3600, 1_000, T0)
    events = head.open(replies)
    assert meter.credit_minor == 400
    assert [e.event for e in events if isinstance(e, EventReport)] == [EventKind.LOW_CREDIT]
    meter, replies = advance(meter, 5 * 3600, 1_000, T0 + 6 * 3600)
    kinds = [e.event for e in head.open(replies) if isinstance(e, EventReport)]
    assert kinds == [EventKind.CREDIT_EXHAUSTED, EventKind.RELAY_CHANGED]
    assert not meter.relay_closed
    assert meter.credit_minor == 0
    assert meter.import_wh == 10_000
    # no consumption while the relay is open
    meter, _ = advance(meter, 3600, 1_000, T0 + 11 * 3600)
    assert meter.import_wh == 10_000
    # a top-up closes it again
    meter, replies = receive(meter, head.seal(TopUp(transfer_id=7, amount_minor=300)), T0 + 12 * 3600)
    messages = head.open(replies)
    assert _only_ack(messages).credit_minor == 300
    assert meter.relay_closed
    assert isinstance(messages[1], EventReport)
    assert messages[1].event is EventKind.RELAY_CHANGED


def test_emergency_credit_lets_the_balance_go_negative_before_disconnection() -> None:
    meter = replace(_meter(credit_minor=100), config=Configure(low_credit_minor=0, emergency_credit_minor=200))
    meter, _ = advance(meter, 2 * 3600, 1_000, T0)  # 200 minor
    assert meter.relay_closed
    assert meter.credit_minor == -100
    assert meter.emergency_active
    meter, _ = advance(meter, 3600, 1_000, T0 + 7200)
    assert meter.credit_minor == -200
    assert not meter.relay_closed


def test_friendly_hours_hold_the_relay_closed_until_they_end() -> None:
    config = Configure(
        low_credit_minor=0, emergency_credit_minor=0, friendly_start_min=18 * 60, friendly_end_min=6 * 60
    )
    meter = replace(_meter(credit_minor=100), config=config)
    evening = T0 + 19 * 3600  # 2026-01-01 19:00 UTC, a Thursday
    assert is_friendly(meter, evening)
    meter, _ = advance(meter, 3 * 3600, 1_000, evening)
    assert meter.relay_closed
    assert meter.credit_minor == -200
    meter, _ = advance(meter, 9 * 3600, 0, evening + 3 * 3600)  # into the next morning
    assert not meter.relay_closed
    weekend = replace(config, friendly_start_min=0, friendly_end_min=0, friendly_days=0b110_0000)
    assert is_friendly(replace(meter, config=weekend), T0 + 2 * 86_400 + 3600)  # Saturday
    assert not is_friendly(replace(meter, config=weekend), T0 + 3600)  # Thursday


def test_tariffs_flat_block_time_of_use_and_pending() -> None:
    head, meter = HeadEnd(), _meter(credit_minor=100_000)
    tou = SetTariff(2, 0, TariffKind.TIME_OF_USE, 0, (TariffStep(0, 50_000), TariffStep(7 * 60, 200_000)))
    meter, replies = receive(meter, head.seal(tou), T0)
    assert _only_ack(head.open(replies)).result is AckResult.OK
    assert price_at(meter, T0 + 3600) == 50_000
    assert price_at(meter, T0 + 8 * 3600) == 200_000
    meter, _ = advance(meter, 24 * 3600, 1_000, T0)  # 7 kWh at 50, 17 kWh at 200
    assert meter.credit_minor == 100_000 - 7 * 50 - 17 * 200
    block = SetTariff(3, T0 + 86_400 * 10, TariffKind.BLOCK, 30, (TariffStep(0, 100_000), TariffStep(50_000, 300_000)))
    meter, replies = receive(meter, head.seal(block), T0 + 86_400)
    assert meter.pending_tariff == block
    assert meter.tariff == tou
    meter, _ = advance(meter, 0, 0, T0 + 86_400 * 10)
    assert meter.tariff == block
    meter, replies = receive(meter, head.seal(block), T0 + 86_400 * 10)
    assert _only_ack(head.open(replies)[-1:]).result is AckResult.DUPLICATE


def test_standing_charge_accrues_by_the_second_without_rounding_loss() -> None:
    meter = replace(_meter(credit_minor=1_000), tariff=SetTariff(1, 0, TariffKind.FLAT, 100, (TariffStep(0, 0),)))
    t = T0
    for _ in range(24 * 60):
        meter, _ = advance(meter, 60, 0, t)
        t += 60
    assert meter.credit_minor == 900


def test_relay_commands_power_limit_tamper() -> None:
    head, meter = HeadEnd(), _meter()
    meter, replies = receive(meter, head.seal(RelayOff(RelayReason.OPERATOR)), T0)
    messages = head.open(replies)
    assert not meter.relay_closed
    assert isinstance(messages[1], EventReport)
    meter, _ = advance(meter, 3600, 2_000, T0)
    assert meter.import_wh == 0
    meter, replies = receive(meter, head.seal(TopUp(1, 100)), T0)
    assert not meter.relay_closed  # an operator disconnection survives a top-up
    meter, replies = receive(meter, head.seal(SetPowerLimit(1_500)), T0)
    meter, replies = receive(meter, head.seal(RelayOn(RelayReason.OPERATOR)), T0)
    assert meter.relay_closed
    meter, replies = advance(meter, 60, 2_000, T0)
    kinds = [m.event for m in head.open(replies) if isinstance(m, EventReport)]
    assert kinds == [EventKind.POWER_LIMIT_EXCEEDED, EventKind.RELAY_CHANGED]
    meter, _ = raise_event(meter, EventKind.COVER_OPEN, T0)
    meter, replies = receive(meter, head.seal(RelayOn(RelayReason.OPERATOR)), T0)
    assert _only_ack(head.open(replies[:1])).reason is ReasonCode.TAMPER_LATCHED
    meter, _ = receive(meter, head.seal(ClearTamper()), T0)
    meter, replies = receive(meter, head.seal(RelayOn(RelayReason.OPERATOR)), T0)
    assert _only_ack(head.open(replies[:1])).result is AckResult.OK
    assert [e.event for e in meter.events][-3:] == [
        EventKind.RELAY_CHANGED,
        EventKind.COVER_OPEN,
        EventKind.RELAY_CHANGED,
    ]


def test_read_request_returns_registers_balance_and_profile() -> None:
    head, meter = HeadEnd(), _meter(credit_minor=100_000)
    meter, _ = advance(meter, 3 * 3600, 1_200, T0)
    request = ReadRequest(ReadItems.REGISTERS | ReadItems.BALANCE | ReadItems.LOAD_PROFILE, T0)
    meter, replies = receive(meter, head.seal(request), T0 + 3 * 3600)
    ack, readings, balance, profile = head.open(replies)
    assert isinstance(ack, Ack)
    assert isinstance(readings, Readings)
    assert readings.import_wh == 3_600
    assert isinstance(balance, BalanceReport)
    assert balance.credit_minor == 100_000 - 360
    assert isinstance(profile, LoadProfile)
    assert profile == LoadProfile(T0, 3600, (1_200, 1_200, 1_200))


def test_time_sync_and_periodic_report() -> None:
    head, meter = HeadEnd(), _meter()
    meter, replies = receive(meter, head.seal(TimeSync(T0 + 100)), T0)
    assert meter.clock_offset_s == 100
    meter = replace(meter, config=Configure(low_credit_minor=0, emergency_credit_minor=0, report_interval_s=3600))
    meter, replies = advance(meter, 3600, 100, T0)
    messages = head.open(replies)
    assert isinstance(messages[-1], PeriodicReport)
    assert messages[-1].taken_at == T0 + 3700


def test_key_change_switches_keys_and_acknowledges_under_the_new_key() -> None:
    head, meter = HeadEnd(), _meter()
    in_flight = head.seal(Ping())  # sealed under the old key, arrives after the change
    meter, replies = receive(meter, head.seal(KeyChange(1, wrap_key(KEY, NEW_KEY))), T0)
    ack, event = head.open(replies, key=NEW_KEY)
    assert isinstance(ack, Ack)
    assert ack.result is AckResult.OK
    assert isinstance(event, EventReport)
    assert (meter.key_id, meter.key) == (1, NEW_KEY)
    meter, replies = receive(meter, in_flight, T0)  # the old key still works until the new one is used
    assert _only_ack(head.open(replies, key=NEW_KEY)).result is AckResult.OK
    head.key, head.key_id = NEW_KEY, 1
    meter, replies = receive(meter, head.seal(Ping()), T0)
    assert meter.previous_key is None
    old = HeadEnd()
    old.counter = 50
    meter, replies = receive(meter, old.seal(Ping()), T0)
    assert replies == []


def test_a_key_change_that_does_not_unwrap_is_rejected() -> None:
    head, meter = HeadEnd(), _meter()
    meter, replies = receive(meter, head.seal(KeyChange(1, wrap_key(OTHER_KEY, NEW_KEY))), T0)
    assert _only_ack(head.open(replies)).reason is ReasonCode.KEY_UNWRAP_FAILED
    assert meter.key == KEY


def test_the_meter_takes_the_xml_profile_too() -> None:
    head, meter = HeadEnd(), _meter(0)
    meter, replies = receive(meter, head.seal(TopUp(3, 700), profile=Profile.XML), T0)
    assert _only_ack(head.open(replies)).credit_minor == 700
    meter = replace(meter, accepts_xml=False)
    meter, replies = receive(meter, head.seal(TopUp(4, 700), profile=Profile.XML), T0)
    assert _only_ack(head.open(replies)).reason is ReasonCode.UNSUPPORTED


def test_ack_applied_tells_the_head_end_whether_the_command_took_effect() -> None:
    assert Ack(1, 1, AckResult.OK).applied
    assert Ack(1, 1, AckResult.DUPLICATE).applied
    assert not Ack(1, 2, AckResult.DUPLICATE, ReasonCode.TARIFF_OUTDATED).applied
    assert not Ack(1, 1, AckResult.REJECTED, ReasonCode.TRANSFER_TOO_OLD).applied
