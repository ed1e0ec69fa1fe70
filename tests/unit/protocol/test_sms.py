"""Segmentation into 8-bit SMS and bounded any-order reassembly (docs/protocol.md §8)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_protocol import (
    ApplicationPorts,
    BadUdh,
    Concatenation,
    MalformedField,
    PartConflict,
    Reassembler,
    ReassemblyLimit,
    decode_frame,
    encode_frame,
    parse_user_data,
    split_frame,
)
from tests.unit.protocol.samples import KEY, METER_CODE, SAMPLES

FRAME = encode_frame(SAMPLES["set_tariff_time_of_use"], meter_code=METER_CODE, key=KEY, key_id=1, counter=9)


def test_a_short_frame_is_one_part_without_a_header() -> None:
    frame = encode_frame(SAMPLES["top_up"], meter_code=METER_CODE, key=KEY, key_id=1, counter=9)
    assert split_frame(frame, reference=9) == [frame]


def test_a_short_frame_with_ports_has_only_the_port_element() -> None:
    frame = encode_frame(SAMPLES["top_up"], meter_code=METER_CODE, key=KEY, key_id=1, counter=9)
    [part] = split_frame(frame, reference=9, ports=ApplicationPorts(0x1F40, 0x0000))
    assert part[:7] == bytes.fromhex("0605041f400000")
    assert parse_user_data(part, has_udh=True).ports == ApplicationPorts(0x1F40, 0)


def test_a_long_frame_is_split_with_8_bit_references() -> None:
    parts = split_frame(FRAME, reference=0xA7)
    assert len(FRAME) > 140
    assert all(len(p) <= 140 for p in parts)
    for number, part in enumerate(parts, start=1):
        assert part[:6] == bytes([5, 0x00, 3, 0xA7, len(parts), number])
    assert b"".join(p[6:] for p in parts) == FRAME
    assert len(parts[0]) == 140  # 134 payload bytes a part


def test_16_bit_references_and_ports_leave_128_bytes_a_part() -> None:
    parts = split_frame(FRAME, reference=0xBEEF, reference_bits=16, ports=ApplicationPorts(2948, 2948))
    first = parse_user_data(parts[0], has_udh=True)
    assert first.concatenation == Concatenation(0xBEEF, len(parts), 1, 16)
    assert first.ports == ApplicationPorts(2948, 2948)
    assert len(first.payload) == 140 - 13


@pytest.mark.parametrize("bits", [8, 16])
def test_reassembly_in_any_order_gives_the_frame_back(bits: int) -> None:
    parts = split_frame(FRAME, reference=200, reference_bits=bits)  # type: ignore[arg-type]
    random.Random(bits).shuffle(parts)
    reassembler = Reassembler()
    result = None
    for part in parts:
        assert result is None
        reassembler, result = reassembler.add(sender="255700000001", body=part, has_udh=True, now=0)
    assert result == FRAME
    assert reassembler.pending_count == 0
    assert decode_frame(result, key=KEY).message == SAMPLES["set_tariff_time_of_use"]


def test_duplicates_are_ignored_conflicts_refused_senders_kept_apart() -> None:
    parts = split_frame(FRAME, reference=1)
    r = Reassembler()
    r, done = r.add(sender="a", body=parts[0], has_udh=True, now=0)
    r, done = r.add(sender="a", body=parts[0], has_udh=True, now=1)
    assert done is None
    assert r.pending_count == 1
    with pytest.raises(PartConflict):
        r.add(sender="a", body=parts[0][:-1] + b"\x00", has_udh=True, now=1)
    r, done = r.add(sender="b", body=parts[1], has_udh=True, now=1)
    assert r.pending_count == 2


def test_reassembly_is_bounded_in_age_parts_bytes_and_pending() -> None:
    parts = split_frame(FRAME, reference=1)
    r = Reassembler(max_age_s=60)
    r, _ = r.add(sender="a", body=parts[0], has_udh=True, now=0)
    assert r.expire(61).pending_count == 0
    r, done = r.add(sender="a", body=parts[1], has_udh=True, now=100)  # the first part has expired
    assert done is None
    assert r.pending_count == 1
    with pytest.raises(ReassemblyLimit):
        Reassembler(max_parts=2).add(sender="a", body=parts[0], has_udh=True, now=0)
    small = Reassembler(max_bytes=200)
    small, _ = small.add(sender="a", body=parts[0], has_udh=True, now=0)
    with pytest.raises(ReassemblyLimit):
        small.add(sender="a", body=parts[1], has_udh=True, now=0)
    crowded = Reassembler(max_pending=2)
    for ref in range(5):
        crowded, _ = crowded.add(sender="a", body=split_frame(FRAME, reference=ref)[0], has_udh=True, now=ref)
    assert crowded.pending_count == 2


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x05\x00\x03\x01",
        b"\x05\x00\x03\x01\x00\x01",
        b"\x05\x00\x03\x01\x02\x03x",
        b"\x03\x00\x02\x01\x01",
        b"\x02\x00",
    ],
)
def test_bad_headers_are_refused(body: bytes) -> None:
    with pytest.raises(BadUdh):
        Reassembler().add(sender="a", body=body, has_udh=True, now=0)


def test_split_refuses_bad_references() -> None:
    with pytest.raises(MalformedField):
        split_frame(FRAME, reference=256)
    with pytest.raises(MalformedField):
        split_frame(FRAME, reference=1, max_part=6)


@given(st.binary(min_size=1, max_size=2000), st.integers(0, 255), st.randoms(use_true_random=False))
def test_split_then_reassemble_is_identity(frame: bytes, reference: int, rnd: random.Random) -> None:
    parts = split_frame(frame, reference=reference)
    has_udh = len(parts) > 1
    rnd.shuffle(parts)
    r = Reassembler()
    results = []
    for part in parts:
        r, done = r.add(sender="s", body=part, has_udh=has_udh, now=0)
        if done is not None:
            results.append(done)
    assert results == [frame]
