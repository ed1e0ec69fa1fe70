"""SMPP PDU codecs, receipts and message-id normalisation (gateway.pdu_smpp): golden bytes, and the
struct-coded hot path checked against smpplib's own classes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.pdu_smpp import (
    DELIVER_SM_RESP_ID,
    SUBMIT_SM_RESP_ID,
    PduDecodeError,
    SequenceCounter,
    decode_deliver_sm,
    decode_message_id,
    decode_pdu,
    decode_short_message,
    encode_deliver_sm,
    encode_pdu,
    encode_response,
    encode_submit_sm,
    make_pdu,
    relative_validity,
)
from gateway.ports import ReceiptState
from gateway.smpp_receipts import IdFormat, ReceiptFormatError, normalise_message_id, parse_receipt, receipt_text

UDH = bytes.fromhex("0500034203 01".replace(" ", ""))
SUBMIT_FIELDS = dict(
    service_type="",
    source_ton=3,
    source_npi=0,
    source_addr="7444",
    dest_ton=1,
    dest_npi=1,
    destination_addr="254700000001",
    esm_class=0x40,
    protocol_id=0,
    validity_period="000001000000000R",
    registered_delivery=1,
    data_coding=4,
    short_message=UDH + bytes(range(20)),
)
GOLDEN_SUBMIT = bytes.fromhex(
    "0000005b00000004000000000000002a"  # header: length 91, submit_sm, status 0, sequence 42
    "00"  # service_type
    "0300"
    "3734343400"  # source TON 3, NPI 0, "7444"
    "0101"
    "32353437303030303030303100"  # destination TON 1, NPI 1, "254700000001"
    "40"
    "00"
    "00"  # esm_class UDHI, protocol_id, priority_flag
    "00"
    "30303030303130303030303030303052"
    "00"  # schedule (none), validity "000001000000000R"
    "01"
    "00"
    "04"
    "00"
    "1a"  # registered_delivery, replace, data_coding 8-bit, default msg, sm_length 26
    "050003420301"
    "000102030405060708090a0b0c0d0e0f10111213"
)


def test_submit_sm_golden_bytes() -> None:
    assert encode_submit_sm(42, **SUBMIT_FIELDS) == GOLDEN_SUBMIT  # type: ignore[arg-type]


def test_submit_sm_matches_smpplib() -> None:
    f = SUBMIT_FIELDS
    theirs = make_pdu(
        "submit_sm",
        sequence=42,
        service_type=f["service_type"],
        source_addr_ton=f["source_ton"],
        source_addr_npi=f["source_npi"],
        source_addr=f["source_addr"],
        dest_addr_ton=f["dest_ton"],
        dest_addr_npi=f["dest_npi"],
        destination_addr=f["destination_addr"],
        esm_class=f["esm_class"],
        protocol_id=f["protocol_id"],
        validity_period=f["validity_period"],
        registered_delivery=f["registered_delivery"],
        data_coding=f["data_coding"],
        short_message=f["short_message"],
    )
    assert encode_pdu(theirs) == GOLDEN_SUBMIT
    parsed = decode_pdu(GOLDEN_SUBMIT)
    assert (parsed.command, parsed.sequence, parsed.short_message) == ("submit_sm", 42, f["short_message"])


def test_submit_sm_refuses_an_oversized_body() -> None:
    with pytest.raises(ValueError, match="254"):
        encode_submit_sm(1, **{**SUBMIT_FIELDS, "short_message": bytes(255)})  # type: ignore[arg-type]


def test_responses_match_smpplib() -> None:
    ours = encode_response(SUBMIT_SM_RESP_ID, 7, message_id="00A1F")
    assert ours == bytes.fromhex("00000016800000040000000000000007303041314600")
    assert ours == encode_pdu(make_pdu("submit_sm_resp", sequence=7, message_id="00A1F"))
    assert decode_message_id(ours) == "00A1F"
    assert decode_message_id(bytes.fromhex("00000010800000040000005800000007")) == ""
    nack = encode_response(DELIVER_SM_RESP_ID, 9, 0x64)
    assert nack == bytes.fromhex("0000001180000005000000640000000900")
    assert nack == encode_pdu(make_pdu("deliver_sm_resp", sequence=9, status=0x64))


def deliver_sm(**fields: object) -> bytes:
    return encode_pdu(make_pdu("deliver_sm", SequenceCounter(), **fields))


def test_deliver_sm_decoding_matches_smpplib() -> None:
    data = deliver_sm(
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="254700000001",
        dest_addr_ton=3,
        destination_addr="7444",
        esm_class=0x04,
        data_coding=0,
        short_message=b"id:1 stat:DELIVRD",
        receipted_message_id="1",
        message_state=2,
        network_error_code=b"\x03\x00\x22",
    )
    ours = decode_deliver_sm(data)
    theirs = decode_pdu(data)
    assert ours.source_addr == theirs.source_addr.decode()
    assert ours.destination_addr == theirs.destination_addr.decode()
    assert (ours.esm_class, ours.data_coding) == (theirs.esm_class, 0)
    assert ours.short_message == theirs.short_message
    assert ours.receipted_message_id == theirs.receipted_message_id.decode() == "1"
    assert ours.message_state == theirs.message_state == 2
    assert ours.network_error_code == theirs.network_error_code == b"\x03\x00\x22"
    assert ours.sequence == theirs.sequence == 1


def test_deliver_sm_with_message_payload() -> None:
    payload = bytes(range(200))
    ours = decode_deliver_sm(deliver_sm(source_addr="1", destination_addr="2", message_payload=payload))
    assert ours.short_message == b""
    assert ours.body == payload


@pytest.mark.parametrize("cut", [17, 30, 45])
def test_truncated_deliver_sm_is_a_decode_error(cut: int) -> None:
    data = deliver_sm(
        source_addr="254700000001", destination_addr="7444", short_message=bytes(40), receipted_message_id="abc"
    )
    with pytest.raises(PduDecodeError):
        decode_deliver_sm(data[:cut])


def test_unknown_command_is_a_decode_error() -> None:
    with pytest.raises(PduDecodeError) as caught:
        decode_pdu(bytes.fromhex("00000010000000420000000000000099"))
    assert (caught.value.command_id, caught.value.sequence) == (0x42, 0x99)


@pytest.mark.parametrize(
    ("raw", "fmt", "canonical"),
    [
        ("1000000", IdFormat.DECIMAL, "f4240"),
        ("00000F4240", IdFormat.HEX, "f4240"),
        ("f4240", IdFormat.HEX, "f4240"),
        (" 00A1 ", IdFormat.AS_IS, "a1"),
        ("0000", IdFormat.AS_IS, "0"),
        ("1234", IdFormat.AS_IS, "1234"),
        ("a1-b2", IdFormat.AS_IS, "a1-b2"),
        ("a1-b2", IdFormat.DECIMAL, "a1-b2"),  # not a decimal number: falls back to AS_IS
    ],
)
def test_message_id_normalisation(raw: str, fmt: IdFormat, canonical: str) -> None:
    assert normalise_message_id(raw, fmt) == canonical


def test_receipt_from_tlvs_wins_over_text() -> None:
    receipt = parse_receipt(
        receipted_message_id=b"0A1",
        message_state=5,
        network_error_code=b"\x03\x00\x22",
        text=b"id:999 stat:DELIVRD err:000 done date:2611220105",
    )
    assert (receipt.message_id, receipt.state, receipt.error_code) == ("a1", ReceiptState.UNDELIVERABLE, 0x22)
    assert receipt.done_at == datetime(2026, 11, 22, 1, 5, tzinfo=UTC)


def test_receipt_from_text() -> None:
    text = b"id:1000000 sub:001 dlvrd:000 submit date:2611220100 done date:261122010530 stat:EXPIRED err:011 text:"
    receipt = parse_receipt(
        receipted_message_id=None, message_state=None, network_error_code=None, text=text, id_format=IdFormat.DECIMAL
    )
    assert (receipt.message_id, receipt.state, receipt.error_code) == ("f4240", ReceiptState.EXPIRED, 11)
    assert receipt.done_at == datetime(2026, 11, 22, 1, 5, 30, tzinfo=UTC)


def test_receipt_text_round_trip() -> None:
    at = datetime(2026, 11, 22, 1, 5, tzinfo=UTC)
    text = receipt_text("77", ReceiptState.DELIVERED, 0, at, at)
    assert text == (b"id:77 sub:001 dlvrd:001 submit date:2611220105 done date:2611220105 stat:DELIVRD err:000 text:")
    receipt = parse_receipt(receipted_message_id=None, message_state=None, network_error_code=None, text=text)
    assert (receipt.message_id, receipt.state, receipt.error_code, receipt.done_at) == (
        "77",
        ReceiptState.DELIVERED,
        0,
        at,
    )


def test_receipt_with_odd_fields_is_still_read() -> None:
    receipt = parse_receipt(
        receipted_message_id=None,
        message_state=None,
        network_error_code=None,
        text=b"ID:ab12 Stat:undeliv err:0A done date:9913991299",
    )
    assert (receipt.message_id, receipt.state, receipt.error_code, receipt.done_at) == (
        "ab12",
        ReceiptState.UNDELIVERABLE,
        10,
        None,
    )


def test_receipt_without_id_is_an_error() -> None:
    with pytest.raises(ReceiptFormatError):
        parse_receipt(receipted_message_id=None, message_state=None, network_error_code=None, text=b"stat:DELIVRD")


def test_relative_validity() -> None:
    assert relative_validity(86400) == "000001000000000R"
    assert relative_validity(3661) == "000000010101000R"
    with pytest.raises(ValueError):
        relative_validity(0)


def test_sequence_counter_wraps() -> None:
    counter = SequenceCounter()
    assert [counter.next_sequence() for _ in range(2)] == [1, 2]
    counter._sequence = SequenceCounter.MAX
    assert counter.next_sequence() == 1


def test_deliver_sm_encoding_matches_smpplib() -> None:
    ours = encode_deliver_sm(
        3,
        source_ton=1,
        source_npi=1,
        source_addr="254700000001",
        dest_ton=3,
        dest_npi=0,
        destination_addr="7444",
        esm_class=0x04,
        data_coding=0,
        short_message=b"id:7 stat:DELIVRD",
        receipted_message_id="7",
        message_state=2,
    )
    theirs = decode_pdu(ours)
    assert (theirs.command, theirs.sequence, theirs.esm_class) == ("deliver_sm", 3, 0x04)
    assert (theirs.source_addr, theirs.destination_addr) == (b"254700000001", b"7444")
    assert (theirs.receipted_message_id, theirs.message_state) == (b"7", 2)
    assert theirs.short_message == b"id:7 stat:DELIVRD"
    same = make_pdu(
        "deliver_sm",
        sequence=3,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="254700000001",
        dest_addr_ton=3,
        dest_addr_npi=0,
        destination_addr="7444",
        esm_class=0x04,
        data_coding=0,
        short_message=b"id:7 stat:DELIVRD",
        receipted_message_id="7",
        message_state=2,
    )
    assert encode_pdu(same) == ours


def test_submit_sm_decodes_with_the_short_message_decoder() -> None:
    sm = decode_short_message(GOLDEN_SUBMIT)
    assert (sm.sequence, sm.source_addr, sm.source_ton, sm.destination_addr, sm.dest_ton) == (
        42,
        "7444",
        3,
        "254700000001",
        1,
    )
    assert (sm.esm_class, sm.registered_delivery, sm.data_coding, sm.validity_period) == (
        0x40,
        1,
        4,
        "000001000000000R",
    )
    assert sm.short_message == SUBMIT_FIELDS["short_message"]
