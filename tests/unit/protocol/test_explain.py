"""explain(): a frame as its XML document and one line, and the document sealed back (docs/protocol.md §11.2)."""

from __future__ import annotations

import pytest

from meter_protocol import BadXml, Profile, encode_frame
from meter_protocol.documents import parse_document
from meter_protocol.explain import explain, frame_from_document
from tests.unit.protocol.samples import KEY, METER_CODE, OTHER_KEY, SAMPLES


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_frame_explains_and_seals_back_to_the_same_bytes(name: str) -> None:
    for profile in Profile:
        frame = encode_frame(SAMPLES[name], meter_code=METER_CODE, key=KEY, key_id=1, counter=12, profile=profile)
        explained = explain(frame, KEY)
        assert explained.message == SAMPLES[name]
        assert explained.error is None
        assert explained.document is not None
        assert "\n" not in explained.summary
        parse_document(explained.document.encode())  # valid against the shipped schema
        assert frame_from_document(explained.document.encode(), key=KEY) == frame


def test_summaries_read_as_operators_expect() -> None:
    frame = encode_frame(SAMPLES["top_up"], meter_code=METER_CODE, key=KEY, key_id=1, counter=12)
    assert explain(frame, KEY).summary == (
        f"head end -> meter {METER_CODE} #12 key 1: top-up of 50000 minor units, transfer 1001"
    )
    ack = encode_frame(SAMPLES["ack_rejected"], meter_code=METER_CODE, key=KEY, key_id=1, counter=3)
    assert explain(ack, KEY).summary.endswith("ack of #8 (set tariff): rejected (tariff_outdated), credit -400")


def test_what_cannot_be_decoded_is_explained_not_raised() -> None:
    frame = encode_frame(SAMPLES["top_up"], meter_code=METER_CODE, key=KEY, key_id=1, counter=12)
    wrong = explain(frame, OTHER_KEY)
    assert wrong.message is None
    assert wrong.error is not None
    assert "NOT decoded: authentication failed" in wrong.summary
    assert wrong.document is not None
    assert 'reason="authentication failed' in wrong.document
    sealed = explain(frame)
    assert "sealed (no key given)" in sealed.summary
    with pytest.raises(BadXml):
        frame_from_document(sealed.document.encode() if sealed.document else b"", key=KEY)
    garbage = explain(b"\x07hello")
    assert garbage.document is None
    assert garbage.summary.startswith("unreadable frame (6 bytes)")
