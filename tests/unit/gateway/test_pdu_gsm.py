"""3GPP TS 23.040 PDUs for the modem (gateway.pdu_gsm): golden bytes, and python-gsmmodem-new as an
independent reader of what we build."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import pytest

from gateway.pdu_gsm import (
    GsmPduError,
    alphabet,
    decode_deliver,
    decode_status_report,
    encode_deliver,
    encode_status_report,
    encode_submit,
    pack_septets,
    receipt_state,
    relative_validity_octet,
    unpack_septets,
)
from gateway.ports import ReceiptState

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from gsmmodem.pdu import decodeSmsPdu, encodeSmsSubmitPdu

UDH = bytes([5, 0, 3, 1, 2, 1])
AT = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)


def test_binary_submit_golden() -> None:
    submit = encode_submit("254700000001", UDH + b"\x01\x02\xff", has_udh=True, validity_s=86400)
    assert submit.pdu.hex() == (
        "00"  # SMSC: the SIM's default
        "71"  # SMS-SUBMIT, relative validity, status report requested, UDHI
        "00"  # TP-MR (the modem sets it)
        "0c91527400000010"  # TP-DA: 12 digits, international
        "00"
        "04"
        "a7"  # TP-PID, TP-DCS 8-bit, TP-VP one day
        "09"
        "050003010201"
        "0102ff"  # TP-UDL, UDH, payload
    )
    assert submit.tpdu_length == 23
    decoded = decodeSmsPdu(submit.pdu.hex())
    assert (decoded["type"], decoded["number"], decoded["text"]) == ("SMS-SUBMIT", "+254700000001", "\x01\x02\xff")


def test_gsm7_submit_matches_the_library() -> None:
    ours = encode_submit("+27820001111", b"hello there", dcs=0x00, message_reference=5)
    [theirs] = encodeSmsSubmitPdu("+27820001111", "hello there", reference=5)
    assert ours.pdu == bytes(theirs.data)  # the library's PDU starts with the empty SMSC field too
    assert ours.tpdu_length == theirs.tpduLength


def test_gsm7_submit_with_udh_fill_bits() -> None:
    submit = encode_submit("254700000001", UDH + b"abc", has_udh=True, dcs=0x00)
    decoded = decodeSmsPdu(submit.pdu.hex())
    assert decoded["text"] == "abc"
    assert submit.pdu[-len(pack_septets(b"abc", 1)) - 6 - 1] == 10  # UDL: 7 septets of header + 3


def test_submit_refuses_what_does_not_fit() -> None:
    with pytest.raises(GsmPduError):
        encode_submit("254700000001", bytes(141))
    with pytest.raises(GsmPduError):
        encode_submit("not a number", b"\x01")
    with pytest.raises(GsmPduError):
        encode_submit("254700000001", b"\x09\x00", has_udh=True)


def test_deliver_round_trip_and_the_library_agrees() -> None:
    body = UDH + bytes(range(250, 256))
    pdu = encode_deliver("254700000001", body, has_udh=True, sent_at=AT)
    deliver = decode_deliver(pdu)
    assert (deliver.sender, deliver.data_coding, deliver.has_udh, deliver.user_data, deliver.sent_at) == (
        "254700000001",
        0x04,
        True,
        body,
        AT,
    )
    theirs = decodeSmsPdu(pdu.hex())
    assert bytes(ord(c) for c in theirs["text"]) == body[6:]


def test_gsm7_deliver_from_the_network() -> None:
    # an SMS-DELIVER as a modem reads it: SMSC +27381000015, sender 27838890001, "hellohello", sent
    # 1999-03-29 15:16:59 +02:00 (two-digit years are read as 20yy)
    pdu = bytes.fromhex("07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37")
    deliver = decode_deliver(pdu)
    theirs = decodeSmsPdu(pdu.hex())
    assert deliver.user_data.decode("ascii") == theirs["text"] == "hellohello"
    assert deliver.data_coding == 0x00
    assert deliver.sent_at.replace(year=1999) == theirs["time"].astimezone(UTC)


def test_status_report_golden_and_states() -> None:
    pdu = encode_status_report(7, "254700000001", 0x00, submitted_at=AT, done_at=AT)
    assert pdu.hex() == "0006070c91527400000010621122102030006211221020300000"
    report = decode_status_report(pdu)
    assert (report.message_reference, report.recipient, report.done_at, report.state) == (
        7,
        "254700000001",
        AT,
        ReceiptState.DELIVERED,
    )
    theirs = decodeSmsPdu(pdu.hex())
    assert (theirs["reference"], theirs["status"]) == (7, 0)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (0x00, ReceiptState.DELIVERED),
        (0x02, ReceiptState.DELIVERED),
        (0x21, ReceiptState.ENROUTE),
        (0x41, ReceiptState.REJECTED),
        (0x46, ReceiptState.EXPIRED),
        (0x48, ReceiptState.DELETED),
        (0x45, ReceiptState.UNDELIVERABLE),
        (0x62, ReceiptState.UNDELIVERABLE),
    ],
)
def test_tp_st_mapping(status: int, state: ReceiptState) -> None:
    assert receipt_state(status) is state


def test_wrong_pdu_types_and_truncation_are_errors() -> None:
    report = encode_status_report(7, "254700000001", 0, submitted_at=AT, done_at=AT)
    deliver = encode_deliver("254700000001", b"\x01\x02", sent_at=AT)
    with pytest.raises(GsmPduError):
        decode_deliver(report)
    with pytest.raises(GsmPduError):
        decode_status_report(deliver)
    for cut in (0, 3, 12, len(deliver) - 1):
        with pytest.raises(GsmPduError):
            decode_deliver(deliver[:cut])


@pytest.mark.parametrize(
    ("seconds", "octet"),
    [
        (60, 0),
        (300, 0),
        (301, 1),
        (12 * 3600, 143),
        (24 * 3600, 167),
        (2 * 86400, 168),
        (30 * 86400, 196),
        (35 * 86400, 197),
        (10**9, 255),
    ],
)
def test_relative_validity(seconds: int, octet: int) -> None:
    assert relative_validity_octet(seconds) == octet


def test_septets_and_alphabets() -> None:
    assert unpack_septets(pack_septets(b"hello", 3), 5, 3) == b"hello"
    assert [alphabet(d) for d in (0x00, 0x04, 0x08, 0xF5, 0xF0)] == ["gsm7", "8bit", "ucs2", "8bit", "gsm7"]
