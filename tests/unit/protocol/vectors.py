"""The golden vectors of tests/vectors/: how they are written and read.

`python -m tests.unit.protocol.vectors` rewrites them from the samples (only when the protocol changes
on purpose — the tests compare the implementation with the files, both ways).
"""

from __future__ import annotations

import enum
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from meter_protocol import (
    ApplicationPorts,
    Message,
    MessageType,
    Profile,
    ReadItems,
    TariffStep,
    derive_meter_key,
    encode_frame,
    meter_code_with_check_digit,
    split_frame,
    wrap_key,
)
from meter_protocol.codec import encode_payload
from meter_protocol.conformance import Bench, Expect, run_reference
from meter_protocol.documents import compress_document, message_to_xml
from meter_protocol.frame import HEADER_BYTES, nonce_for
from meter_protocol.messages import MESSAGE_CLASSES, LoadProfile
from meter_protocol.reference_meter import new_meter
from tests.unit.protocol.samples import KEY, METER_CODE, NEW_KEY, SAMPLES, T0

KEY_SEED = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # the master of §13.5 makes the new keys

VECTORS = Path(__file__).parents[2] / "vectors"


def message_to_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"type": message.message_type.name.lower()}
    for f in fields(message):
        value = getattr(message, f.name)
        if isinstance(value, ReadItems):
            value = [str(m.name).lower() for m in ReadItems if m in value]
        elif isinstance(value, enum.Enum):
            value = value.name.lower()
        elif isinstance(value, bytes):
            value = value.hex()
        elif f.name == "steps":
            value = [{"start": s.start, "price_milli_minor_per_kwh": s.price_milli_minor_per_kwh} for s in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def message_from_json(data: dict[str, Any]) -> Message:
    cls = MESSAGE_CLASSES[MessageType[data["type"].upper()]]
    hints = {f.name: f.type for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "type":
            continue
        hint = str(hints[name])
        if hint == "ReadItems":
            items = ReadItems(0)
            for item in value:
                items |= ReadItems[item.upper()]
            value = items
        elif hint == "bytes":
            value = bytes.fromhex(value)
        elif name == "steps":
            value = tuple(TariffStep(s["start"], s["price_milli_minor_per_kwh"]) for s in value)
        elif isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, str):
            enum_class = next(
                c for c in vars(__import__("meter_protocol")).values() if isinstance(c, type) and c.__name__ == hint
            )
            value = enum_class[value.upper()]
        kwargs[name] = value
    return cls(**kwargs)


def frame_vector(
    name: str, counter: int, profile: Profile = Profile.BINARY, key_id: int = 1, message: Message | None = None
) -> dict[str, Any]:
    message = SAMPLES[name] if message is None else message
    frame = encode_frame(message, meter_code=METER_CODE, key=KEY, key_id=key_id, counter=counter, profile=profile)
    if profile is Profile.XML:
        document = message_to_xml(message, compact=True)
        payload = compress_document(document)
    else:
        document, payload = b"", encode_payload(message)
    vector: dict[str, Any] = {
        "name": name if profile is Profile.BINARY else f"{name}_xml",
        "key": KEY.hex(),
        "key_id": key_id,
        "meter_code": METER_CODE,
        "counter": counter,
        "profile": profile.name.lower(),
        "direction": message.message_type.direction.name.lower(),
        "message": message_to_json(message),
        "header": frame[:HEADER_BYTES].hex(),
        "nonce": nonce_for(frame[4:13], message.message_type.direction, counter).hex(),
        "payload": payload.hex(),
        "ciphertext": frame[HEADER_BYTES:-8].hex(),
        "tag": frame[-8:].hex(),
        "frame": frame.hex(),
    }
    if document:
        vector["document"] = document.decode()
    return vector


def build() -> dict[str, Any]:
    files: dict[str, Any] = {}
    for counter, name in enumerate(sorted(SAMPLES), start=1):
        files[f"frame_{name}.json"] = frame_vector(name, counter)
    for name in ("top_up", "set_tariff_block", "ack", "key_change", "load_profile"):
        files[f"frame_{name}_xml.json"] = frame_vector(name, 100, Profile.XML)
    # §11.1: a load profile without intervals is an element without children
    empty = frame_vector("load_profile_empty", 101, Profile.XML, message=LoadProfile(T0, 3600, ()))
    files["frame_load_profile_empty_xml.json"] = empty
    for takes_xml in (True, False):
        files[f"conformance_{'xml' if takes_xml else 'binary'}.json"] = conformance_vector(takes_xml)
    long_frame = bytes.fromhex(files["frame_set_tariff_time_of_use.json"]["frame"])
    files["segmentation.json"] = {
        "frame": long_frame.hex(),
        "cases": [
            {
                "reference": 0x2A,
                "reference_bits": 8,
                "ports": None,
                "parts": [p.hex() for p in split_frame(long_frame, reference=0x2A)],
            },
            {
                "reference": 0x1234,
                "reference_bits": 16,
                "ports": [2948, 2948],
                "parts": [
                    p.hex()
                    for p in split_frame(
                        long_frame, reference=0x1234, reference_bits=16, ports=ApplicationPorts(2948, 2948)
                    )
                ],
            },
        ],
    }
    master = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    files["keys.json"] = {
        "derivation": [
            {
                "master_key": master.hex(),
                "meter_code": METER_CODE,
                "key_id": k,
                "key": derive_meter_key(master, METER_CODE, k).hex(),
            }
            for k in (0, 1)
        ],
        "wrap": [{"kek": KEY.hex(), "key": NEW_KEY.hex(), "wrapped": wrap_key(KEY, NEW_KEY).hex()}],
    }
    files["meter_codes.json"] = {
        "valid": [
            meter_code_with_check_digit(b)
            for b in ("0000000000000000000", "4100000000000012345", "9999999999999999999", "1234567890123456789")
        ],
        "invalid": ["41000000000000123450", "4100000000000012345", "410000000000001234567", "4100000000000012345x"],
    }
    files["replay_window.json"] = {
        "size": 32,
        "steps": _replay_steps(),
    }
    return files


def _value_to_json(value: Any) -> Any:
    return value.name.lower() if isinstance(value, enum.Enum) else value


def expect_to_json(expect: Expect) -> dict[str, Any]:
    fields_json = {name: _value_to_json(value) for name, value in expect.fields.items()}
    return {
        "type": expect.message_type.name.lower(),
        "key_id": expect.key_id,
        "profile": expect.profile.name.lower(),
        "fields": fields_json,
    }


def conformance_vector(takes_xml: bool) -> dict[str, Any]:
    """The checklist (docs/protocol.md §14) run against a factory-fresh reference meter: every frame sent,
    the exact replies, and what each reply must say."""
    meter = replace(new_meter(METER_CODE, KEY, key_id=1), accepts_xml=takes_xml)
    bench = Bench(METER_CODE, 1, KEY, KEY_SEED, xml=takes_xml)
    _, runs = run_reference(meter, bench, T0)
    return {
        "meter": {
            "meter_code": METER_CODE,
            "key": KEY.hex(),
            "key_id": 1,
            "credit_minor": 0,
            "takes_xml": takes_xml,
            "clock": T0,
            "key_seed": KEY_SEED.hex(),
        },
        "lines": [
            {
                "id": run.line.id,
                "title": run.line.title,
                "section": run.line.section,
                "exchanges": [
                    {
                        "note": x.exchange.note,
                        "send": x.exchange.frame.hex(),
                        "replies": [r.hex() for r in x.replies],
                        "expect": [expect_to_json(e) for e in x.exchange.expect],
                    }
                    for x in run.exchanges
                ],
            }
            for run in runs
        ],
    }


def _replay_steps() -> list[dict[str, Any]]:
    from meter_protocol import OutsideWindow, Replayed, ReplayWindow

    window = ReplayWindow(size=32)
    steps = []
    for counter in (1, 3, 2, 3, 40, 9, 8, 9, 72, 41, 40, 100, 68, 69):
        try:
            window = window.check_and_mark(counter)
            outcome = "accepted"
        except Replayed:
            outcome = "replayed"
        except OutsideWindow:
            outcome = "outside_window"
        steps.append({"counter": counter, "outcome": outcome, "highest": window.highest, "bitmap": window.bitmap})
    return steps


def write() -> None:
    VECTORS.mkdir(exist_ok=True)
    for old in VECTORS.glob("*.json"):
        old.unlink()
    for name, content in build().items():
        (VECTORS / name).write_text(json.dumps(content, indent=2) + "\n")


if __name__ == "__main__":
    write()
