"""Property tests: every message round-trips every way; no input raises anything but ProtocolError."""

from __future__ import annotations

import contextlib
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter_protocol import (
    Ack,
    AckResult,
    Direction,
    Message,
    Profile,
    ProtocolError,
    Reassembler,
    TopUp,
    decode_frame,
    encode_frame,
    message_from_xml,
    message_to_xml,
    peek_header,
    split_frame,
)
from meter_protocol.codec import decode_payload, encode_payload
from meter_protocol.documents import decompress_document
from meter_protocol.explain import explain, frame_from_document
from meter_protocol.frame import HEADER_BYTES, nonce_for
from meter_protocol.keys import aead_for
from meter_protocol.reference_meter import new_meter, receive
from tests.unit.protocol.samples import KEY, METER_CODE, SAMPLES, T0
from tests.unit.protocol.strategies import messages

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
counters = st.integers(1, 0xFFFF_FFFF)
VALID_FRAMES = [
    encode_frame(m, meter_code=METER_CODE, key=KEY, key_id=0, counter=i + 1, profile=p)
    for i, m in enumerate(SAMPLES.values())
    for p in Profile
]


@FAST
@given(messages, counters, st.integers(0, 255))
def test_binary_frames_round_trip(message: Message, counter: int, key_id: int) -> None:
    frame = encode_frame(message, meter_code=METER_CODE, key=KEY, key_id=key_id, counter=counter)
    decoded = decode_frame(frame, key=KEY, meter_code=METER_CODE, direction=message.message_type.direction)
    assert decoded.message == message
    assert (decoded.header.counter, decoded.header.key_id) == (counter, key_id)
    assert decode_payload(message.message_type, encode_payload(message)) == message


@FAST
@given(messages)
def test_xml_documents_and_xml_frames_round_trip(message: Message) -> None:
    assert message_from_xml(message_to_xml(message)) == message
    frame = encode_frame(message, meter_code=METER_CODE, key=KEY, key_id=3, counter=9, profile=Profile.XML)
    assert decode_frame(frame, key=KEY).message == message
    explained = explain(frame, KEY)
    assert explained.document is not None
    assert frame_from_document(explained.document.encode(), key=KEY) == frame


def _no_foreign_error(call: object, *args: object) -> None:
    with contextlib.suppress(ProtocolError):
        call(*args)  # type: ignore[operator]


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    _no_foreign_error(peek_header, data)
    _no_foreign_error(lambda d: decode_frame(d, key=KEY), data)
    _no_foreign_error(lambda d: decode_payload(d[0] if d else 1, d[1:]), data)
    _no_foreign_error(message_from_xml, data)
    _no_foreign_error(decompress_document, data)
    _no_foreign_error(lambda d: Reassembler().add(sender="s", body=d, has_udh=True, now=0), data)
    explain(data, KEY)


@FAST
@given(
    st.sampled_from(VALID_FRAMES),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    st.integers(-5, 5),
)
def test_mutated_frames_raise_only_protocol_errors(frame: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    mutated = bytearray(frame)
    for position, value in edits:
        mutated[position % len(mutated)] = value
    if cut < 0:
        mutated = mutated[:cut]
    else:
        mutated += bytes(cut)
    _no_foreign_error(lambda d: decode_frame(d, key=KEY), bytes(mutated))
    explain(bytes(mutated), KEY)
    meter, replies = receive(new_meter(METER_CODE, KEY), bytes(mutated), T0)
    if bytes(mutated) != frame:
        assert meter.dropped_frames == 1 or replies


@FAST
@given(st.sampled_from(VALID_FRAMES), st.binary(max_size=200))
def test_authentic_frames_with_random_plaintext_raise_only_protocol_errors(frame: bytes, plaintext: bytes) -> None:
    header = frame[:HEADER_BYTES]
    direction = Direction.UPLINK if header[2] & 0x80 else Direction.DOWNLINK
    sealed = header + aead_for(KEY).encrypt(
        nonce_for(header[4:13], direction, int.from_bytes(header[13:17])), plaintext, header
    )
    error = None
    try:
        decode_frame(sealed, key=KEY)
    except ProtocolError as exc:
        error = exc
    assert error is None or error.authenticated
    _, replies = receive(new_meter(METER_CODE, KEY), sealed, T0)
    if direction is Direction.DOWNLINK:
        assert len(replies) >= 1  # an authentic frame is always answered


@FAST
@given(st.binary(min_size=1, max_size=1500), st.integers(0, 255))
def test_any_frame_survives_segmentation(frame: bytes, reference: int) -> None:
    parts = split_frame(frame, reference=reference)
    r, out = Reassembler(), None
    for part in parts:
        r, out = r.add(sender="m", body=part, has_udh=len(parts) > 1, now=T0)
    assert out == frame


@FAST
@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(1, 10_000)), min_size=1, max_size=12),
    st.randoms(use_true_random=False),
)
def test_top_ups_are_credited_exactly_once_whatever_the_network_does(
    issued: list[tuple[int, int]], rnd: random.Random
) -> None:
    """Top-ups (transfer id, amount) sealed once each and re-issued under new counters, then delivered
    duplicated and shuffled: each transfer id is credited at most once, and every ack that says it took
    effect matches a credit."""
    amounts: dict[int, int] = {}
    frames = []
    for counter, (transfer_id, first_amount) in enumerate(issued, start=1):
        amount = amounts.setdefault(transfer_id, first_amount)  # a re-issue carries the same amount
        frames.append(
            encode_frame(TopUp(transfer_id, amount), meter_code=METER_CODE, key=KEY, key_id=0, counter=counter)
        )
    deliveries = frames + [rnd.choice(frames) for _ in range(len(frames))]
    rnd.shuffle(deliveries)
    meter = new_meter(METER_CODE, KEY)
    credited: set[int] = set()
    for frame in deliveries:
        before = meter.credit_minor
        meter, replies = receive(meter, frame, T0)
        message = decode_frame(frame, key=KEY).message
        assert isinstance(message, TopUp)
        ack = decode_frame(replies[0], key=KEY).message
        assert isinstance(ack, Ack)
        if meter.credit_minor != before:
            assert message.transfer_id not in credited
            assert meter.credit_minor - before == message.amount_minor
            assert ack.result is AckResult.OK
            credited.add(message.transfer_id)
        else:
            assert ack.result is not AckResult.OK
    assert meter.credit_minor == sum(amounts[t] for t in credited)
    assert credited == set(amounts)  # 40 ids fit the 64-wide transfer window: nothing is lost
