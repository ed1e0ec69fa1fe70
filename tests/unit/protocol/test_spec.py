"""docs/protocol.md keeps up with the code: its payload tables, codes and files are the real ones."""

from __future__ import annotations

import json
from pathlib import Path

from meter_protocol import AckResult, EventKind, MessageType, ReasonCode, RelayReason, TariffKind
from meter_protocol.documents import ZDICT
from meter_protocol.frame import HEADER_BYTES, MAX_FRAME_BYTES, MIN_FRAME_BYTES
from meter_protocol.replay import DEFAULT_WINDOW
from tests.unit.protocol.spec_tables import BEGIN, END, layout_tables
from tests.unit.protocol.vectors import VECTORS

SPEC = (Path(__file__).parents[3] / "docs" / "protocol.md").read_text()
FLAT = " ".join(SPEC.split())


def test_the_payload_tables_are_the_codec_layouts() -> None:
    assert SPEC[SPEC.index(BEGIN) : SPEC.index(END) + len(END)] == layout_tables()


def test_every_code_is_documented_with_its_value() -> None:
    for mtype in MessageType:
        assert f"| `0x{mtype.value:02X}` | `{mtype.name.lower()}` |" in SPEC
    for enum_class in (AckResult, ReasonCode, RelayReason, TariffKind, EventKind):
        for member in enum_class:
            assert f"`{member.value}` {member.name.lower()}" in FLAT, member


def test_the_numbers_in_the_spec_are_the_code_s() -> None:
    assert HEADER_BYTES == 17
    assert MIN_FRAME_BYTES == 25
    assert f"at most **{MAX_FRAME_BYTES}** bytes" in SPEC
    assert f"W = **{DEFAULT_WINDOW}** for\nframe counters" in SPEC
    assert ZDICT.decode() in SPEC
    assert f"these {len(ZDICT)} ASCII" in SPEC


def test_the_worked_examples_are_the_vectors() -> None:
    top_up = json.loads((VECTORS / "frame_top_up.json").read_text())
    for field in ("ciphertext", "tag", "nonce"):
        assert " ".join(top_up[field][i : i + 2] for i in range(0, len(top_up[field]), 2)) in SPEC
    xml = json.loads((VECTORS / "frame_top_up_xml.json").read_text())
    assert " ".join(xml["payload"][i : i + 2] for i in range(0, len(xml["payload"]), 2)) in SPEC
    keys = json.loads((VECTORS / "keys.json").read_text())
    for derived in keys["derivation"]:
        assert derived["key"] in SPEC
    for path in VECTORS.glob("*.json"):
        if not path.name.startswith("frame_"):
            assert path.name in SPEC
