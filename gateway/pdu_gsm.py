"""GSM SMS transfer-layer PDUs (3GPP TS 23.040 §9.2) for the modem transport: pure functions over bytes.

- `encode_submit`: an SMS-SUBMIT (§9.2.2.2) carrying 8-bit (DCS 0x04), UCS-2 or GSM-7 user data, with
  TP-UDHI when the body starts with a user-data header, a status report requested (TP-SRR) and an
  optional relative validity period (§9.2.3.12.1). Returned with an empty SMSC address in front, as
  AT+CMGS in PDU mode takes it (27.005 §3.5.1), together with the TPDU length the command needs.
- `decode_deliver`: an SMS-DELIVER (§9.2.2.1) as +CMGR / +CMT give it (SMSC address first): the user
  data comes back as raw octets, the UDH included (GSM-7 unpacked to one septet per octet).
- `decode_status_report`: an SMS-STATUS-REPORT (§9.2.2.3), TP-ST mapped to a receipt state (§9.2.3.15).

The TP-DCS octet is passed through as `data_coding`: its common values (0x00 GSM-7, 0x04 8-bit, 0x08
UCS-2, 0xF5/0xF6 8-bit class 1/2) mean the same as SMPP's data_coding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.ports import ReceiptState

_MTI_SUBMIT = 0x01
_MTI_STATUS_REPORT = 0x02
_VPF_RELATIVE = 0x10
_SRR = 0x20
_UDHI = 0x40
TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN = 0x81


class GsmPduError(ValueError):
    """A PDU that is not a well-formed SMS-DELIVER / SMS-STATUS-REPORT, or a SUBMIT that cannot be built."""


class Alphabet:
    GSM7 = "gsm7"
    OCTETS = "8bit"
    UCS2 = "ucs2"


def alphabet(dcs: int) -> str:
    """The alphabet TP-DCS selects (23.038 §4)."""
    group = dcs >> 4
    if group <= 0x7 and not (dcs & 0x20):  # general data coding (uncompressed) or auto-deletion group
        return {0: Alphabet.GSM7, 1: Alphabet.OCTETS, 2: Alphabet.UCS2}.get((dcs >> 2) & 0x03, Alphabet.OCTETS)
    if group == 0xF:
        return Alphabet.OCTETS if dcs & 0x04 else Alphabet.GSM7
    if group in (0xC, 0xD):
        return Alphabet.GSM7
    if group == 0xE:
        return Alphabet.UCS2
    return Alphabet.OCTETS


# -- addresses, times, septets ------------------------------------------------------------------------


def _semi_octets(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


def _digits(data: bytes, count: int) -> str:
    text = "".join(f"{b & 0x0F:X}{b >> 4:X}" for b in data)
    return text[:count]


def encode_address(number: str, international: bool = True) -> bytes:
    """TP-DA: digit count, type of address, BCD digits (§9.1.2.5). `number` is digits, '+' allowed."""
    digits = number.removeprefix("+")
    if not digits.isdigit() or len(digits) > 20:
        raise GsmPduError(f"not a phone number: {number!r}")
    toa = TOA_INTERNATIONAL if international or number.startswith("+") else TOA_UNKNOWN
    return bytes((len(digits), toa)) + _semi_octets(digits)


def _decode_address(data: bytes, pos: int) -> tuple[str, int]:
    count, toa = data[pos], data[pos + 1]
    octets = (count + 1) // 2
    raw = data[pos + 2 : pos + 2 + octets]
    if len(raw) != octets:
        raise GsmPduError("address truncated")
    alphanumeric = toa & 0x70 == 0x50  # GSM-7 packed; `count` is then in semi-octets
    text = unpack_septets(raw, count * 4 // 7).decode("latin-1") if alphanumeric else _digits(raw, count)
    return text, pos + 2 + octets


def _decode_timestamp(data: bytes, pos: int) -> datetime:
    raw = data[pos : pos + 7]
    if len(raw) != 7:
        raise GsmPduError("timestamp truncated")
    swapped = [((b & 0x0F) * 10 + (b >> 4)) for b in raw[:6]]
    tz = raw[6]
    quarters = (tz & 0x07) * 10 + (tz >> 4)
    if tz & 0x08:
        quarters = -quarters
    try:
        local = datetime(2000 + swapped[0], swapped[1], swapped[2], swapped[3], swapped[4], swapped[5])
    except ValueError as exc:
        raise GsmPduError(f"bad timestamp {raw.hex()}") from exc
    return (local - timedelta(minutes=15 * quarters)).replace(tzinfo=UTC)


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack 7-bit values LSB first (23.038 §6.1.2.1), after `fill_bits` zero bits."""
    value = 0
    bits = fill_bits
    for s in septets:
        value |= (s & 0x7F) << bits
        bits += 7
    return value.to_bytes((bits + 7) // 8, "little") if bits else b""


def unpack_septets(data: bytes, count: int, skip_bits: int = 0) -> bytes:
    value = int.from_bytes(data, "little") >> skip_bits
    return bytes((value >> (7 * i)) & 0x7F for i in range(count))


def relative_validity_octet(seconds: int) -> int:
    """TP-VP relative format (§9.2.3.12.1), rounded up to the next step the format can say."""
    minutes = -(-seconds // 60)
    if minutes <= 12 * 60:
        return max(0, -(-minutes // 5) - 1)
    if minutes <= 24 * 60:
        return 143 + -(-(minutes - 12 * 60) // 30)
    days = -(-minutes // (24 * 60))
    if days <= 30:
        return 166 + days
    return min(255, 192 + -(-days // 7))


# -- SMS-SUBMIT ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitPdu:
    pdu: bytes  # SMSC address field (empty: the SIM's default) + TPDU, as AT+CMGS wants it in hex
    tpdu_length: int  # the <length> of AT+CMGS=<length>: octets after the SMSC address


def encode_submit(
    destination: str,
    user_data: bytes,
    *,
    has_udh: bool = False,
    dcs: int = 0x04,
    protocol_id: int = 0x00,
    validity_s: int | None = None,
    status_report: bool = True,
    international: bool = True,
    message_reference: int = 0,
) -> SubmitPdu:
    """An SMS-SUBMIT. `user_data` is the whole TP-UD: UDH (when has_udh) then the payload; for GSM-7 the
    payload is one septet per octet. Raises GsmPduError when it does not fit one SMS (140 octets)."""
    first = _MTI_SUBMIT | (_SRR if status_report else 0) | (_UDHI if has_udh else 0)
    if validity_s:
        first |= _VPF_RELATIVE
    if has_udh and (not user_data or user_data[0] + 1 > len(user_data)):
        raise GsmPduError("user data header longer than the user data")
    if alphabet(dcs) == Alphabet.GSM7:
        header = user_data[: user_data[0] + 1] if has_udh else b""
        septets = user_data[len(header) :]
        fill = (7 - (len(header) * 8) % 7) % 7
        packed = header + pack_septets(septets, fill)
        udl = (len(header) * 8 + fill) // 7 + len(septets)
        encoded = packed
    else:
        encoded = user_data
        udl = len(user_data)
    if len(encoded) > 140:
        raise GsmPduError(f"user data of {len(encoded)} octets does not fit one SMS (140)")
    tpdu = bytes((first, message_reference & 0xFF)) + encode_address(destination, international)
    tpdu += bytes((protocol_id, dcs))
    if validity_s:
        tpdu += bytes((relative_validity_octet(validity_s),))
    tpdu += bytes((udl,)) + encoded
    return SubmitPdu(pdu=b"\x00" + tpdu, tpdu_length=len(tpdu))


# -- SMS-DELIVER and SMS-STATUS-REPORT ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliverPdu:
    sender: str
    protocol_id: int
    data_coding: int
    sent_at: datetime  # the SMSC time stamp, UTC
    has_udh: bool
    user_data: bytes  # UDH included; GSM-7 unpacked to one septet per octet


def _skip_smsc(data: bytes) -> int:
    if not data:
        raise GsmPduError("empty PDU")
    return 1 + data[0]


def decode_deliver(data: bytes) -> DeliverPdu:
    """An SMS-DELIVER with its leading SMSC address field. Raises GsmPduError."""
    try:
        pos = _skip_smsc(data)
        first = data[pos]
        if first & 0x03 != 0x00:
            raise GsmPduError(f"not an SMS-DELIVER (first octet 0x{first:02x})")
        sender, pos = _decode_address(data, pos + 1)
        protocol_id, dcs = data[pos], data[pos + 1]
        sent_at = _decode_timestamp(data, pos + 2)
        pos += 9
        udl = data[pos]
        ud = data[pos + 1 :]
    except IndexError as exc:
        raise GsmPduError("SMS-DELIVER truncated") from exc
    has_udh = bool(first & _UDHI)
    if alphabet(dcs) == Alphabet.GSM7:
        header = ud[: ud[0] + 1] if has_udh and ud else b""
        header_septets = -(-(len(header) * 8) // 7)
        if len(ud) < (udl * 7 + 7) // 8:
            raise GsmPduError("user data truncated")
        text = unpack_septets(ud, udl)[header_septets:]
        user_data = header + text
    else:
        if len(ud) < udl:
            raise GsmPduError("user data truncated")
        user_data = ud[:udl]
    if has_udh and (not user_data or user_data[0] + 1 > len(user_data)):
        raise GsmPduError("user data header longer than the user data")
    return DeliverPdu(
        sender=sender, protocol_id=protocol_id, data_coding=dcs, sent_at=sent_at, has_udh=has_udh, user_data=user_data
    )


@dataclass(frozen=True, slots=True)
class StatusReportPdu:
    message_reference: int  # TP-MR of the SMS-SUBMIT it reports on (the +CMGS: <mr>)
    recipient: str
    submitted_at: datetime  # UTC
    done_at: datetime  # UTC, TP-DT
    status: int  # TP-ST

    @property
    def state(self) -> ReceiptState:
        return receipt_state(self.status)


def receipt_state(status: int) -> ReceiptState:
    """TP-ST (§9.2.3.15) as a receipt state."""
    if status <= 0x1F:
        return ReceiptState.DELIVERED  # received, forwarded (unconfirmed) or replaced
    if status <= 0x3F:
        return ReceiptState.ENROUTE  # temporary error, the SC is still trying
    if status == 0x46:
        return ReceiptState.EXPIRED
    if status in (0x47, 0x48):
        return ReceiptState.DELETED
    if status == 0x41 or status == 0x43:
        return ReceiptState.REJECTED
    return ReceiptState.UNDELIVERABLE  # permanent error, or temporary with no more attempts


def decode_status_report(data: bytes) -> StatusReportPdu:
    """An SMS-STATUS-REPORT with its leading SMSC address field. Raises GsmPduError."""
    try:
        pos = _skip_smsc(data)
        first = data[pos]
        if first & 0x03 != _MTI_STATUS_REPORT:
            raise GsmPduError(f"not an SMS-STATUS-REPORT (first octet 0x{first:02x})")
        reference = data[pos + 1]
        recipient, pos = _decode_address(data, pos + 2)
        submitted_at = _decode_timestamp(data, pos)
        done_at = _decode_timestamp(data, pos + 7)
        status = data[pos + 14]
    except IndexError as exc:
        raise GsmPduError("SMS-STATUS-REPORT truncated") from exc
    return StatusReportPdu(
        message_reference=reference, recipient=recipient, submitted_at=submitted_at, done_at=done_at, status=status
    )


# -- building the PDUs a network sends (for fakes and simulators) -------------------------------------


def _encode_timestamp(at: datetime) -> bytes:
    at = at.astimezone(UTC)
    fields = (at.year % 100, at.month, at.day, at.hour, at.minute, at.second)
    return bytes(((v % 10) << 4) | (v // 10) for v in fields) + b"\x00"


def encode_deliver(
    sender: str, user_data: bytes, *, has_udh: bool = False, dcs: int = 0x04, sent_at: datetime, protocol_id: int = 0x00
) -> bytes:
    """An SMS-DELIVER (with an empty SMSC address field) carrying octets (8-bit / UCS-2 DCS)."""
    if alphabet(dcs) == Alphabet.GSM7:
        raise GsmPduError("encode_deliver takes 8-bit or UCS-2 data")
    first = 0x04 | (_UDHI if has_udh else 0)  # TP-MMS: no more messages
    return (
        b"\x00"
        + bytes((first,))
        + encode_address(sender)
        + bytes((protocol_id, dcs))
        + _encode_timestamp(sent_at)
        + bytes((len(user_data),))
        + user_data
    )


def encode_status_report(
    reference: int, recipient: str, status: int, *, submitted_at: datetime, done_at: datetime
) -> bytes:
    """An SMS-STATUS-REPORT (with an empty SMSC address field)."""
    return (
        b"\x00"
        + bytes((0x06, reference & 0xFF))
        + encode_address(recipient)
        + _encode_timestamp(submitted_at)
        + _encode_timestamp(done_at)
        + bytes((status,))
    )
