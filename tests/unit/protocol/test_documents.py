"""XML documents of every message, the shipped schema and the hardened parser (docs/protocol.md §11)."""

from __future__ import annotations

from importlib import resources

import pytest

from meter_protocol import BadXml, MalformedField, Oversize, ProtocolError, message_from_xml, message_to_xml
from meter_protocol.documents import MAX_DOCUMENT_BYTES, compress_document, decompress_document, schema_text
from tests.unit.protocol.samples import SAMPLES


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_message_round_trips_through_xml(name: str) -> None:
    for compact in (False, True):
        document = message_to_xml(SAMPLES[name], compact=compact)
        assert message_from_xml(document) == SAMPLES[name]


def test_the_shipped_schema_is_the_generated_one() -> None:
    shipped = resources.files("meter_protocol").joinpath("schema", "smsmeter-protocol-1.xsd").read_text()
    assert shipped == schema_text()


def test_documents_read_as_operators_expect() -> None:
    assert message_to_xml(SAMPLES["top_up"], compact=True) == (
        b'<topUp xmlns="urn:smsmeter:protocol:1" transferId="1001" amountMinor="50000"/>'
    )
    document = message_to_xml(SAMPLES["read_request"]).decode()
    assert 'items="registers balance load_profile"' in document


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<ping xmlns="urn:smsmeter:protocol:1">&lol2;</ping>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<topUp xmlns="urn:smsmeter:protocol:1" transferId="1" amountMinor="&xxe;"/>"""


@pytest.mark.parametrize(
    "document",
    [
        BILLION_LAUGHS,
        EXTERNAL,
        b"<topUp",
        b"",
        b'<topUp xmlns="urn:other" transferId="1" amountMinor="1"/>',
        b'<topUp xmlns="urn:smsmeter:protocol:1" transferId="1"/>',
        b'<topUp xmlns="urn:smsmeter:protocol:1" transferId="-1" amountMinor="1"/>',
        b'<topUp xmlns="urn:smsmeter:protocol:1" transferId="1" amountMinor="1" extra="1"/>',
        b'<relayOff xmlns="urn:smsmeter:protocol:1" reason="whim"/>',
        b'<frame xmlns="urn:smsmeter:protocol:1"/>',
        b"\xff\xfe<\x00",
    ],
)
def test_bad_documents_are_refused_with_bad_xml(document: bytes) -> None:
    with pytest.raises(BadXml):
        message_from_xml(document)


def test_schema_valid_but_inconsistent_documents_are_malformed() -> None:
    with pytest.raises(MalformedField):
        message_from_xml(b'<topUp xmlns="urn:smsmeter:protocol:1" transferId="0" amountMinor="1"/>')


def test_size_limits_hold_for_documents_and_compressed_payloads() -> None:
    with pytest.raises(Oversize):
        message_from_xml(b"<ping " + b" " * MAX_DOCUMENT_BYTES + b"/>")
    bomb = compress_document(b"<ping>" + b"a" * 10 * MAX_DOCUMENT_BYTES + b"</ping>")
    assert len(bomb) < 1000
    with pytest.raises(Oversize):
        decompress_document(bomb)
    document = message_to_xml(SAMPLES["ping"], compact=True)
    packed = compress_document(document)
    assert decompress_document(packed) == document
    for bad in (packed[:-1], packed + b"x", b"\xff\xff"):
        with pytest.raises(ProtocolError):
            decompress_document(bad)
