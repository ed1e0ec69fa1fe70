"""The points specification 1.0 decides (docs/protocol.md, each marked **Decided**), one test or more each.

The conversations are in the conformance vectors (test_conformance.py); these tests pin the codec, the
document form and the reference meter's rules directly.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from meter_protocol import (
    Ack,
    AckResult,
    KeyChange,
    LoadProfile,
    MalformedField,
    MessageType,
    Ping,
    Profile,
    ReadItems,
    ReadRequest,
    ReasonCode,
    TopUp,
    ValueOutOfRange,
    advance,
    decode_frame,
    encode_frame,
    message_from_xml,
    message_to_xml,
    new_meter,
    receive,
    wrap_key,
)
from meter_protocol.codec import decode_payload
from meter_protocol.documents import schema_text
from meter_protocol.errors import BadXml
from meter_protocol.frame import seal_frame
from tests.unit.protocol.samples import KEY, METER_CODE, NEW_KEY, OTHER_KEY, T0

DOCS = Path(__file__).parents[3] / "docs"
NS = 'xmlns="urn:smsmeter:protocol:1"'


def test_the_published_schema_is_the_shipped_one() -> None:
    shipped = resources.files("meter_protocol").joinpath("schema", "smsmeter-protocol-1.xsd").read_text()
    assert (DOCS / "smsmeter-protocol-1.xsd").read_text() == shipped == schema_text()


# --- malformed or value_out_of_range (§6) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_code", "payload"),
    [
        (MessageType.TOP_UP, bytes.fromhex("00000000000003e900000000")),  # amount 0
        (MessageType.TOP_UP, bytes.fromhex("000000000000000000000001")),  # transfer id 0
        (MessageType.CONFIGURE, bytes(8) + (1440).to_bytes(2, "big") + bytes(9)),
        (MessageType.CONFIGURE, bytes(12) + b"\x80" + bytes(6)),  # friendly_days bit 7
        (MessageType.CONFIGURE, bytes(13) + (841).to_bytes(2, "big") + bytes(4)),
        (MessageType.READ_REQUEST, bytes(5)),
        (MessageType.READ_REQUEST, b"\x08" + bytes(4)),
        (MessageType.SET_TARIFF, bytes.fromhex("0000000000000000000000010000000000000001")),
        (MessageType.SET_TARIFF, bytes.fromhex("0001000000000000000000010000000100000001")),
    ],
)
def test_a_value_the_protocol_excludes_is_out_of_range(type_code: MessageType, payload: bytes) -> None:
    with pytest.raises(ValueOutOfRange):
        decode_payload(type_code, payload)


@pytest.mark.parametrize(
    ("type_code", "payload"),
    [
        (MessageType.TOP_UP, bytes(11)),
        (MessageType.RELAY_OFF, b"\x00"),
        (MessageType.SET_TARIFF, bytes.fromhex("000100000000000000000000")),  # count 0
        (MessageType.SET_TARIFF, bytes.fromhex("000100000000000000000041") + bytes(8 * 65)),
        (MessageType.LOAD_PROFILE, bytes.fromhex("000000000e1061") + bytes(4 * 97)),
        (MessageType.BALANCE_REPORT, bytes(12) + b"\x02" + bytes(11)),  # boolean byte 2
    ],
)
def test_a_payload_that_does_not_parse_is_malformed_not_out_of_range(type_code: MessageType, payload: bytes) -> None:
    with pytest.raises(MalformedField) as caught:
        decode_payload(type_code, payload)
    assert not isinstance(caught.value, ValueOutOfRange)


def test_in_xml_a_value_the_type_cannot_hold_is_malformed_one_a_rule_excludes_is_out_of_range() -> None:
    with pytest.raises(BadXml):
        message_from_xml(f'<topUp {NS} transferId="1" amountMinor="-1"/>'.encode())
    with pytest.raises(ValueOutOfRange):
        message_from_xml(f'<topUp {NS} transferId="1" amountMinor="0"/>'.encode())


def test_the_meter_answers_each_with_its_reason() -> None:
    meter = new_meter(METER_CODE, KEY, key_id=1)
    zero = seal_frame(
        MessageType.TOP_UP, bytes(7) + b"\x01" + bytes(4), meter_code=METER_CODE, key=KEY, key_id=1, counter=1
    )
    short = seal_frame(MessageType.TOP_UP, bytes(11), meter_code=METER_CODE, key=KEY, key_id=1, counter=2)
    meter, first = receive(meter, zero, T0)
    meter, second = receive(meter, short, T0)
    assert [_ack(f).reason for f in first + second] == [ReasonCode.VALUE_OUT_OF_RANGE, ReasonCode.MALFORMED]


def _ack(frame: bytes, key: bytes = KEY) -> Ack:
    message = decode_frame(frame, key=key).message
    assert isinstance(message, Ack)
    return message


# --- the XML form (§11.1) -----------------------------------------------------------------------------


def test_acked_type_is_a_number_not_a_name() -> None:
    ack = Ack(7, 0x0C, AckResult.REJECTED, ReasonCode.UNKNOWN_TYPE)
    assert b'ackedType="12"' in message_to_xml(ack, compact=True)
    assert message_from_xml(message_to_xml(ack)) == ack
    with pytest.raises(BadXml):
        message_from_xml(
            f'<ack {NS} ackedCounter="7" ackedType="top_up" result="ok" reason="none" creditMinor="0"/>'.encode()
        )


def test_hex_is_written_lower_case_and_read_in_either() -> None:
    change = KeyChange(2, wrap_key(KEY, NEW_KEY))
    document = message_to_xml(change, compact=True)
    assert change.wrapped_key.hex().encode() in document
    assert (
        message_from_xml(document.replace(change.wrapped_key.hex().encode(), change.wrapped_key.hex().upper().encode()))
        == change
    )


def test_an_empty_load_profile_is_an_element_without_children_and_counts_are_not_attributes() -> None:
    empty = LoadProfile(T0, 3600, ())
    assert message_to_xml(empty, compact=True) == f'<loadProfile {NS} startAt="{T0}" intervalS="3600"/>'.encode()
    assert message_from_xml(message_to_xml(empty)) == empty
    with pytest.raises(BadXml):
        message_from_xml(f'<loadProfile {NS} startAt="{T0}" intervalS="3600" count="0"/>'.encode())
    with pytest.raises(BadXml):
        message_from_xml(
            f'<setTariff {NS} version="1" effectiveAt="0" kind="flat" standingChargeMinorPerDay="0"/>'.encode()
        )


# --- replies in the profile of the command (§11.3) ----------------------------------------------------


def test_an_xml_command_is_answered_in_xml_and_unsupported_in_binary() -> None:
    frame = encode_frame(TopUp(1, 500), meter_code=METER_CODE, key=KEY, key_id=1, counter=1, profile=Profile.XML)
    meter = new_meter(METER_CODE, KEY, key_id=1)
    _, replies = receive(meter, frame, T0)
    assert replies[0][1] == Profile.XML
    assert _ack(replies[0]).result is AckResult.OK
    _, replies = receive(replace(meter, accepts_xml=False), frame, T0)
    assert replies[0][1] == Profile.BINARY
    assert _ack(replies[0]).reason is ReasonCode.UNSUPPORTED


def test_what_the_meter_sends_unprompted_goes_in_its_own_profile() -> None:
    meter = replace(new_meter(METER_CODE, KEY, key_id=1, credit_minor=100), report_profile=Profile.XML)
    meter = replace(meter, config=replace(meter.config, report_interval_s=60))
    _, frames = advance(meter, 60, 0, T0)
    assert frames
    assert all(f[1] == Profile.XML for f in frames)


# --- the load profile (§12.2) ---------------------------------------------------------------------------


def test_the_load_profile_is_the_complete_hours_since_the_hour_asked_rounded_down() -> None:
    meter = new_meter(METER_CODE, KEY, key_id=1, credit_minor=10**9)
    meter, _ = advance(meter, 2 * 3600 + 1800, 1001, T0)  # 2.5 hours at 1001 W
    ask = ReadRequest(ReadItems.LOAD_PROFILE, T0 + 1234)  # inside the first hour: from its start
    _, replies = receive(meter, encode_frame(ask, meter_code=METER_CODE, key=KEY, key_id=1, counter=1), T0 + 9000)
    profile = decode_frame(replies[1], key=KEY).message
    assert profile == LoadProfile(T0, 3600, (1001, 1001))  # the current hour is not included
    late = ReadRequest(ReadItems.LOAD_PROFILE, T0 + 8000)
    _, replies = receive(meter, encode_frame(late, meter_code=METER_CODE, key=KEY, key_id=1, counter=2), T0 + 9000)
    assert decode_frame(replies[1], key=KEY).message == LoadProfile(T0 + 7200, 3600, ())


def test_the_load_profile_reaches_back_48_hours_at_most() -> None:
    meter = new_meter(METER_CODE, KEY, key_id=1, credit_minor=10**12)
    meter, _ = advance(meter, 60 * 3600, 3600, T0)
    ask = ReadRequest(ReadItems.LOAD_PROFILE, 0)
    _, replies = receive(meter, encode_frame(ask, meter_code=METER_CODE, key=KEY, key_id=1, counter=1), T0 + 60 * 3600)
    profile = decode_frame(replies[1], key=KEY).message
    assert isinstance(profile, LoadProfile)
    assert profile.start_at == T0 + 12 * 3600
    assert profile.energies_wh == (3600,) * 48


# --- key change (§3.3) ---------------------------------------------------------------------------------


def test_a_new_key_id_equal_to_the_kept_previous_one_is_in_use() -> None:
    meter = new_meter(METER_CODE, KEY, key_id=1)
    first = encode_frame(KeyChange(2, wrap_key(KEY, NEW_KEY)), meter_code=METER_CODE, key=KEY, key_id=1, counter=1)
    meter, _ = receive(meter, first, T0)
    back = KeyChange(1, wrap_key(KEY, OTHER_KEY))  # under the kept key 1, naming its own id
    meter, replies = receive(meter, encode_frame(back, meter_code=METER_CODE, key=KEY, key_id=1, counter=2), T0)
    assert _ack(replies[0], NEW_KEY).reason is ReasonCode.KEY_ID_IN_USE
    assert (meter.key_id, meter.previous_key_id) == (2, 1)


def test_unwrap_is_checked_before_the_key_id() -> None:
    meter = new_meter(METER_CODE, KEY, key_id=1)
    broken = bytearray(wrap_key(KEY, KEY))
    broken[5] ^= 0xFF
    frame = encode_frame(KeyChange(1, bytes(broken)), meter_code=METER_CODE, key=KEY, key_id=1, counter=1)
    _, replies = receive(meter, frame, T0)
    assert _ack(replies[0]).reason is ReasonCode.KEY_UNWRAP_FAILED


def test_nothing_follows_a_duplicate_or_a_rejection() -> None:
    meter = new_meter(METER_CODE, KEY, key_id=1)
    frame = encode_frame(Ping(), meter_code=METER_CODE, key=KEY, key_id=1, counter=1)
    meter, _ = receive(meter, frame, T0)
    _, replies = receive(meter, frame, T0)
    assert len(replies) == 1
    assert _ack(replies[0]).result is AckResult.DUPLICATE
