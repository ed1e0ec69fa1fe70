"""The golden vectors of tests/vectors/ (docs/protocol.md §13), checked both ways.

Encoding each vector's message must give its frame byte for byte; decoding its frame must give its
message. The crypto is also checked independently of meter_protocol, straight from the vector's key,
nonce and header with `cryptography`'s AES-CCM, so the vectors stand on their own.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from meter_protocol import (
    ApplicationPorts,
    MessageType,
    OutsideWindow,
    Profile,
    Reassembler,
    Replayed,
    ReplayWindow,
    decode_frame,
    derive_meter_key,
    encode_frame,
    is_valid_meter_code,
    split_frame,
    unwrap_key,
    wrap_key,
)
from meter_protocol.documents import ZDICT
from tests.unit.protocol.vectors import VECTORS, build, message_from_json

FRAME_FILES = sorted(VECTORS.glob("frame_*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_the_files_are_what_the_generator_writes() -> None:
    built = build()
    on_disk = {p.name: _load(p) for p in VECTORS.glob("*.json")}
    assert on_disk == json.loads(json.dumps(built))


def test_every_message_type_has_a_vector() -> None:
    covered = {MessageType[_load(p)["message"]["type"].upper()] for p in FRAME_FILES}
    assert covered == set(MessageType)


@pytest.mark.parametrize("path", FRAME_FILES, ids=lambda p: p.stem)
def test_encoding_the_message_gives_the_frame(path: Path) -> None:
    v = _load(path)
    frame = encode_frame(
        message_from_json(v["message"]),
        meter_code=v["meter_code"],
        key=bytes.fromhex(v["key"]),
        key_id=v["key_id"],
        counter=v["counter"],
        profile=Profile[v["profile"].upper()],
    )
    assert frame.hex() == v["frame"]


@pytest.mark.parametrize("path", FRAME_FILES, ids=lambda p: p.stem)
def test_decoding_the_frame_gives_the_message(path: Path) -> None:
    v = _load(path)
    decoded = decode_frame(bytes.fromhex(v["frame"]), key=bytes.fromhex(v["key"]), meter_code=v["meter_code"])
    assert decoded.message == message_from_json(v["message"])
    assert decoded.header.counter == v["counter"]
    assert decoded.header.key_id == v["key_id"]


@pytest.mark.parametrize("path", FRAME_FILES, ids=lambda p: p.stem)
def test_every_byte_is_accounted_for_independently(path: Path) -> None:
    v = _load(path)
    frame = bytes.fromhex(v["frame"])
    header, nonce = bytes.fromhex(v["header"]), bytes.fromhex(v["nonce"])
    assert frame == header + bytes.fromhex(v["ciphertext"]) + bytes.fromhex(v["tag"])
    version, profile, mtype, key_id, meter, counter = struct.unpack(">BBBB9sI", header)
    assert (version, key_id, counter) == (1, v["key_id"], v["counter"])
    assert profile == {"binary": 0, "xml": 1}[v["profile"]]
    assert mtype == MessageType[v["message"]["type"].upper()].value
    assert int.from_bytes(meter, "big") == int(v["meter_code"])
    uplink = 0x80 if v["direction"] == "uplink" else 0
    assert nonce == bytes([meter[0] | uplink]) + meter[1:] + counter.to_bytes(4, "big")
    payload = AESCCM(bytes.fromhex(v["key"]), tag_length=8).decrypt(nonce, frame[17:], header)
    assert payload.hex() == v["payload"]
    if v["profile"] == "xml":
        inflate = zlib.decompressobj(-15, ZDICT)
        assert inflate.decompress(payload).decode() == v["document"]


def test_segmentation_vectors() -> None:
    v = _load(VECTORS / "segmentation.json")
    frame = bytes.fromhex(v["frame"])
    for case in v["cases"]:
        ports = ApplicationPorts(*case["ports"]) if case["ports"] else None
        parts = split_frame(frame, reference=case["reference"], reference_bits=case["reference_bits"], ports=ports)
        assert [p.hex() for p in parts] == case["parts"]
        r = Reassembler()
        done = None
        for part in reversed(case["parts"]):
            r, done = r.add(sender="x", body=bytes.fromhex(part), has_udh=True, now=0)
        assert done == frame


def test_key_vectors() -> None:
    v = _load(VECTORS / "keys.json")
    for d in v["derivation"]:
        assert derive_meter_key(bytes.fromhex(d["master_key"]), d["meter_code"], d["key_id"]).hex() == d["key"]
    for w in v["wrap"]:
        assert wrap_key(bytes.fromhex(w["kek"]), bytes.fromhex(w["key"])).hex() == w["wrapped"]
        assert unwrap_key(bytes.fromhex(w["kek"]), bytes.fromhex(w["wrapped"])).hex() == w["key"]


def test_meter_code_vectors() -> None:
    v = _load(VECTORS / "meter_codes.json")
    assert all(is_valid_meter_code(c) for c in v["valid"])
    assert not any(is_valid_meter_code(c) for c in v["invalid"])


def test_replay_window_vectors() -> None:
    v = _load(VECTORS / "replay_window.json")
    window = ReplayWindow(size=v["size"])
    for step in v["steps"]:
        try:
            window = window.check_and_mark(step["counter"])
            outcome = "accepted"
        except Replayed:
            outcome = "replayed"
        except OutsideWindow:
            outcome = "outside_window"
        assert (outcome, window.highest, window.bitmap) == (step["outcome"], step["highest"], step["bitmap"])
