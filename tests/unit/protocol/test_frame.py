"""The protected frame: round trips, header peeking, and every refusal (docs/protocol.md §2, §3, §7)."""

from __future__ import annotations

import pytest

from meter_protocol import (
    BadKey,
    BadTag,
    Direction,
    MalformedField,
    MessageType,
    OutsideWindow,
    Oversize,
    Profile,
    ProtocolError,
    Replayed,
    ReplayWindow,
    SetTariff,
    TariffKind,
    TariffStep,
    TooShort,
    TopUp,
    UnknownType,
    UnsupportedVersion,
    WrongDirection,
    WrongMeter,
    decode_frame,
    encode_frame,
    peek_header,
)
from meter_protocol.frame import HEADER_BYTES, MIN_FRAME_BYTES, nonce_for
from meter_protocol.keys import aead_for
from tests.unit.protocol.samples import KEY, METER_CODE, OTHER_KEY, OTHER_METER_CODE, SAMPLES


def _frame(name: str = "top_up", counter: int = 1, profile: Profile = Profile.BINARY) -> bytes:
    return encode_frame(SAMPLES[name], meter_code=METER_CODE, key=KEY, key_id=1, counter=counter, profile=profile)


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_message_round_trips(name: str, profile: Profile) -> None:
    frame = _frame(name, counter=42, profile=profile)
    decoded = decode_frame(frame, key=KEY, meter_code=METER_CODE)
    assert decoded.message == SAMPLES[name]
    assert decoded.header.counter == 42
    assert decoded.header.profile is profile
    assert decoded.header.message_type is SAMPLES[name].message_type


def test_every_command_but_long_tariff_tables_fits_one_sms() -> None:
    for name, _message in SAMPLES.items():
        if name in ("set_tariff_time_of_use",):
            continue
        assert len(_frame(name)) <= 140, name


def test_peek_header_reads_identity_without_the_key() -> None:
    header = peek_header(_frame("top_up", counter=77))
    assert header.meter_code == METER_CODE
    assert header.key_id == 1
    assert header.counter == 77
    assert header.message_type is MessageType.TOP_UP
    assert header.direction is Direction.DOWNLINK
    assert peek_header(_frame("ack")).direction is Direction.UPLINK


def test_frame_layout_is_header_ciphertext_tag() -> None:
    frame = _frame("top_up", counter=5)
    assert frame[:4] == bytes([1, 0, 0x01, 1])
    assert int.from_bytes(frame[4:13], "big") == int(METER_CODE)
    assert frame[13:17] == (5).to_bytes(4, "big")
    assert len(frame) == HEADER_BYTES + 12 + 8  # TopUp payload 12 bytes, tag 8
    nonce = nonce_for(frame[4:13], Direction.DOWNLINK, 5)
    assert aead_for(KEY).decrypt(nonce, frame[HEADER_BYTES:], frame[:HEADER_BYTES]) == (
        (1001).to_bytes(8, "big") + (50_000).to_bytes(4, "big")
    )


def test_the_nonce_differs_by_direction_meter_and_counter() -> None:
    field = int(METER_CODE).to_bytes(9, "big")
    nonces = {
        nonce_for(field, Direction.DOWNLINK, 1),
        nonce_for(field, Direction.UPLINK, 1),
        nonce_for(field, Direction.DOWNLINK, 2),
        nonce_for(int(OTHER_METER_CODE).to_bytes(9, "big"), Direction.DOWNLINK, 1),
    }
    assert len(nonces) == 4
    assert all(len(n) == 13 for n in nonces)


def test_every_single_bit_flip_is_refused() -> None:
    frame = _frame("top_up")
    for index in range(len(frame)):
        for bit in range(8):
            tampered = bytearray(frame)
            tampered[index] ^= 1 << bit
            with pytest.raises(ProtocolError):
                decode_frame(bytes(tampered), key=KEY)


def test_a_payload_bit_flip_is_a_bad_tag() -> None:
    frame = bytearray(_frame("top_up"))
    frame[HEADER_BYTES + 2] ^= 0x10
    with pytest.raises(BadTag) as info:
        decode_frame(bytes(frame), key=KEY)
    assert info.value.counter == 1
    assert not info.value.authenticated


def test_the_wrong_key_is_refused() -> None:
    with pytest.raises(BadTag):
        decode_frame(_frame(), key=OTHER_KEY)


def test_a_frame_for_another_meter_is_refused() -> None:
    with pytest.raises(WrongMeter) as info:
        decode_frame(_frame(), key=KEY, meter_code=OTHER_METER_CODE)
    assert info.value.actual == METER_CODE


def test_a_reflected_frame_is_refused_by_direction() -> None:
    with pytest.raises(WrongDirection):
        decode_frame(_frame("top_up"), key=KEY, direction=Direction.UPLINK)


def test_a_replayed_frame_is_refused_and_the_error_carries_the_header() -> None:
    frame = _frame(counter=3)
    window = decode_frame(frame, key=KEY, window=ReplayWindow()).window
    assert window is not None
    with pytest.raises(Replayed) as info:
        decode_frame(frame, key=KEY, window=window)
    assert info.value.authenticated
    assert info.value.header is not None
    assert info.value.header.counter == 3


def test_out_of_order_inside_the_window_is_accepted_below_it_refused() -> None:
    window = ReplayWindow(size=32)
    window = decode_frame(_frame(counter=40), key=KEY, window=window).window
    assert window is not None
    window = decode_frame(_frame(counter=20), key=KEY, window=window).window
    assert window is not None
    with pytest.raises(OutsideWindow):
        decode_frame(_frame(counter=8), key=KEY, window=window)


def test_short_long_and_unknown_frames_are_refused() -> None:
    frame = _frame()
    with pytest.raises(TooShort):
        peek_header(frame[: MIN_FRAME_BYTES - 1])
    with pytest.raises(Oversize):
        peek_header(frame + bytes(5000))
    with pytest.raises(UnsupportedVersion):
        peek_header(b"\x02" + frame[1:])
    with pytest.raises(UnknownType):
        peek_header(frame[:2] + b"\x7f" + frame[3:])
    with pytest.raises(MalformedField):
        peek_header(frame[:2] + b"\x01" + frame[3:13] + bytes(4) + frame[17:])  # counter 0
    with pytest.raises(MalformedField):
        peek_header(frame[:4] + b"\xff" * 9 + frame[13:])  # more than 20 digits


def test_encode_refuses_bad_arguments() -> None:
    message = TopUp(1, 1)
    with pytest.raises(MalformedField):
        encode_frame(message, meter_code=METER_CODE, key=KEY, key_id=1, counter=0)
    with pytest.raises(MalformedField):
        encode_frame(message, meter_code=METER_CODE, key=KEY, key_id=256, counter=1)
    with pytest.raises(BadKey):
        encode_frame(message, meter_code=METER_CODE, key=KEY[:15], key_id=1, counter=1)
    with pytest.raises(MalformedField):
        encode_frame(message, meter_code=METER_CODE[:-1] + "0", key=KEY, key_id=1, counter=1)


def test_an_encrypted_frame_does_not_reveal_its_payload() -> None:
    one = encode_frame(TopUp(5, 100), meter_code=METER_CODE, key=KEY, key_id=1, counter=1)
    two = encode_frame(TopUp(5, 100), meter_code=METER_CODE, key=KEY, key_id=1, counter=2)
    assert one[HEADER_BYTES:] != two[HEADER_BYTES:]
    assert (100).to_bytes(4, "big") not in one[HEADER_BYTES:-8]


def test_the_layouts_follow_the_dataclass_field_order() -> None:
    from dataclasses import fields

    from meter_protocol.codec import LAYOUTS
    from meter_protocol.messages import MESSAGE_CLASSES

    for mtype, layout in LAYOUTS.items():
        names = [f.name for f in fields(MESSAGE_CLASSES[mtype])]
        assert names[: len(layout)] == [name for name, _, _ in layout], mtype
        assert len(names) - len(layout) == (1 if mtype in (MessageType.SET_TARIFF, MessageType.LOAD_PROFILE) else 0)


def test_tariff_steps_decode_right_past_the_shared_step_table() -> None:
    """Decoded steps are shared values; more distinct steps than the table holds still decode exactly."""
    for version in range(1, 120):
        steps = tuple(TariffStep(m, version * 1_000 + m) for m in range(0, 1440, 30))
        tariff = SetTariff(version, 0, TariffKind.TIME_OF_USE, 30, steps)
        frame = encode_frame(tariff, meter_code=METER_CODE, key=KEY, key_id=1, counter=version)
        assert decode_frame(frame, key=KEY, meter_code=METER_CODE).message == tariff
