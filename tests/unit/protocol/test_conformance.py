"""The conformance checklist (docs/protocol.md §14) and its golden vectors (tests/vectors/conformance_*.json).

A maker's meter reads `send` and must answer `replies` byte for byte when it starts as the vector's
meter; the checklist itself passes against the reference meter and fails, on the right line, against
meters that get one decision wrong.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from meter_protocol import (
    Ack,
    AckResult,
    MessageType,
    ReasonCode,
    decode_frame,
    derive_meter_key,
    encode_frame,
    new_meter,
    receive,
)
from meter_protocol.conformance import CHECKLIST, Bench, run_lines, run_reference
from meter_protocol.frame import parse_raw_header
from meter_protocol.reference_meter import MeterState
from tests.unit.protocol.samples import KEY, METER_CODE, T0
from tests.unit.protocol.vectors import KEY_SEED, VECTORS

SPEC = (Path(__file__).parents[3] / "docs" / "protocol.md").read_text()
FILES = sorted(VECTORS.glob("conformance_*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_fresh_reference_meter_answers_every_vector_byte_for_byte(path: Path) -> None:
    v = _load(path)
    m = v["meter"]
    meter = new_meter(m["meter_code"], bytes.fromhex(m["key"]), key_id=m["key_id"], credit_minor=m["credit_minor"])
    meter = replace(meter, accepts_xml=m["takes_xml"])
    for line in v["lines"]:
        for exchange in line["exchanges"]:
            meter, replies = receive(meter, bytes.fromhex(exchange["send"]), m["clock"])
            assert [r.hex() for r in replies] == exchange["replies"], (line["id"], exchange["note"])


@pytest.mark.parametrize("takes_xml", [True, False], ids=["xml", "binary"])
def test_the_reference_meter_passes_every_line(takes_xml: bool) -> None:
    meter = replace(new_meter(METER_CODE, KEY, key_id=1), accepts_xml=takes_xml)
    _, runs = run_reference(meter, Bench(METER_CODE, 1, KEY, KEY_SEED, xml=takes_xml), T0)
    assert [(r.line.id, [p for x in r.exchanges for p in x.problems]) for r in runs] == [
        (line.id, []) for line in CHECKLIST
    ]


def key_of(key_id: int) -> bytes:
    """The keys the checklist gives the meter: the vector key, then keys derived from the seed."""
    return KEY if key_id == 1 else derive_meter_key(KEY_SEED, METER_CODE, key_id)


def _run_faulty(fault: Any) -> dict[str, bool]:
    """The checklist against a reference meter whose answers `fault(state, frame, replies)` rewrites."""
    meter: list[MeterState] = [new_meter(METER_CODE, KEY, key_id=1)]

    def send(frame: bytes) -> list[bytes]:
        before = meter[0]
        meter[0], replies = receive(before, frame, T0)
        return list(fault(before, frame, replies))

    runs = run_lines(send, Bench(METER_CODE, 1, KEY, KEY_SEED), T0)
    return {r.line.id: r.passed for r in runs}


def test_a_meter_that_ignores_unknown_types_fails_that_line_only() -> None:
    def silent(state: MeterState, frame: bytes, replies: list[bytes]) -> list[bytes]:
        return [] if parse_raw_header(frame).type_code == 0x0C else replies

    passed = _run_faulty(silent)
    assert not passed["C06"]
    assert all(ok for line, ok in passed.items() if line != "C06")


def test_a_meter_that_drops_a_stale_counter_fails_c09() -> None:
    def drops_stale(state: MeterState, frame: bytes, replies: list[bytes]) -> list[bytes]:
        acks = [decode_frame(reply, key=key_of(reply[3])).message for reply in replies]
        stale = any(isinstance(a, Ack) and a.reason is ReasonCode.COUNTER_TOO_OLD for a in acks)
        return [] if stale else replies

    passed = _run_faulty(drops_stale)
    assert not passed["C09"]
    assert passed["C08"]


def test_a_meter_that_replies_in_binary_to_xml_fails_c14() -> None:
    def binary(state: MeterState, frame: bytes, replies: list[bytes]) -> list[bytes]:
        out = []
        for reply in replies:
            h = decode_frame(reply, key=key_of(reply[3])).header
            message = decode_frame(reply, key=key_of(reply[3])).message
            out.append(
                encode_frame(message, meter_code=h.meter_code, key=key_of(h.key_id), key_id=h.key_id, counter=h.counter)
            )
        return out

    passed = _run_faulty(binary)
    assert not passed["C14"]
    assert passed["C13"]


def test_every_line_is_in_the_spec_s_checklist_with_its_vector() -> None:
    for line in CHECKLIST:
        assert f"| {line.id} |" in SPEC, line.id
    assert "conformance_xml.json" in SPEC
    assert "conformance_binary.json" in SPEC


def test_the_unknown_type_vector_is_what_the_spec_decides() -> None:
    v = _load(VECTORS / "conformance_xml.json")
    line = next(x for x in v["lines"] if x["id"] == "C06")
    first, again = line["exchanges"]
    assert bytes.fromhex(first["send"])[2] == 0x0C
    reply = decode_frame(bytes.fromhex(first["replies"][0]), key=KEY).message
    assert reply == Ack(reply.acked_counter, 0x0C, AckResult.REJECTED, ReasonCode.UNKNOWN_TYPE, reply.credit_minor)
    replayed = decode_frame(bytes.fromhex(again["replies"][0]), key=KEY).message
    assert isinstance(replayed, Ack)
    assert (replayed.result, replayed.reason) == (AckResult.DUPLICATE, ReasonCode.UNKNOWN_TYPE)
    assert MessageType.ACK.value == bytes.fromhex(first["replies"][0])[2]
