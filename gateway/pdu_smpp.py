"""SMPP 3.4 PDUs shared by the client transport and the simulated server: status and esm_class values,
framing on top of smpplib's PDU classes, and the four PDUs of every message coded with struct. Delivery
receipts and message ids are read in `gateway.smpp_receipts`.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any, TypeAlias

from smpplib import command_codes, consts
from smpplib import exceptions as smpp_exceptions
from smpplib import smpp as smpp_factory

HEADER = struct.Struct(">LLLL")
MAX_PDU_LENGTH = 64 * 1024

ESME_ROK = consts.SMPP_ESME_ROK
ESME_RINVCMDLEN = 0x00000002
ESME_RINVCMDID = consts.SMPP_ESME_RINVCMDID
ESME_RSYSERR = 0x00000008
ESME_RTHROTTLED = consts.SMPP_ESME_RTHROTTLED
ESME_RMSGQFUL = consts.SMPP_ESME_RMSGQFUL
ESME_RX_T_APPN = 0x00000064
ESME_RX_P_APPN = 0x00000065
THROTTLE_STATUSES = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})

ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04
ESM_INTERMEDIATE = 0x20

GENERIC_NACK_ID = 0x80000000


@functools.lru_cache(maxsize=64)  # one or two validity periods are configured; computed once each
def relative_validity(seconds: int) -> str:
    """SMPP 3.4 §7.1.1 relative time `YYMMDDhhmmss000R` for a validity period in seconds (max 99 years)."""
    if seconds <= 0:
        raise ValueError("validity must be positive")
    minutes, s = divmod(seconds, 60)
    hours, mi = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    years, d = divmod(days, 365)
    months, d = divmod(d, 30)
    return f"{years:02d}{months:02d}{d:02d}{h:02d}{mi:02d}{s:02d}000R"


# -- PDUs: smpplib's classes, framed by us ------------------------------------------------------------


class SequenceCounter:
    """SMPP sequence numbers 1..0x7FFFFFFF, wrapping; the `client` smpplib's PDU classes draw from.

    Used from one event loop only (smpplib's own generator is shared, unlocked, between threads).
    """

    MAX = 0x7FFFFFFF

    def __init__(self) -> None:
        self._sequence = 0

    @property
    def sequence(self) -> int:
        return self._sequence

    def next_sequence(self) -> int:
        self._sequence = 1 if self._sequence >= self.MAX else self._sequence + 1
        return self._sequence


class PduDecodeError(Exception):
    """A PDU whose header is sound but whose body smpplib cannot read (or an unknown command id)."""

    def __init__(self, command_id: int, sequence: int, reason: str) -> None:
        super().__init__(f"cannot decode PDU 0x{command_id:08x} seq {sequence}: {reason}")
        self.command_id = command_id
        self.sequence = sequence
        self.reason = reason


Pdu: TypeAlias = Any  # a smpplib.command.Command subclass; smpplib carries no type hints
_NAMES = {code: name for name, code in command_codes.commands.items()}


def make_pdu(
    name: str, counter: SequenceCounter | None = None, *, sequence: int | None = None, **fields: object
) -> Pdu:
    """A smpplib PDU. Requests draw their sequence number from `counter`; responses pass `sequence=`."""
    pdu: Pdu = smpp_factory.make_pdu(name, client=counter or SequenceCounter(), allow_unknown_opt_params=True, **fields)
    if sequence is not None:
        pdu.sequence = sequence
    return pdu


def encode_pdu(pdu: Pdu) -> bytes:
    data: bytes = pdu.generate()
    return data


def decode_pdu(data: bytes) -> Pdu:
    """Decode one whole PDU (header included). Raises PduDecodeError."""
    _length, command_id, _status, sequence = HEADER.unpack_from(data)
    name = _NAMES.get(command_id)
    if name is None:
        raise PduDecodeError(command_id, sequence, "unknown command id")
    try:
        pdu = make_pdu(name, sequence=sequence)
        pdu.parse(data)
        pdu.sequence = sequence
    except (
        smpp_exceptions.PDUError,
        smpp_exceptions.UnknownCommandError,
        struct.error,
        KeyError,
        ValueError,
        TypeError,
        IndexError,
    ) as exc:
        raise PduDecodeError(command_id, sequence, repr(exc)) from exc
    return pdu


def text_field(value: bytes | str | None) -> str:
    """A C-octet-string field as smpplib parsed it (bytes), as text."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00")
    return value


# -- the hot path, coded with struct ------------------------------------------------------------------
# smpplib builds every PDU through a generic class that visits all ~45 fields of submit_sm (about 70 µs
# a PDU, measured): that alone capped the transport below the bare smpplib client. The four PDUs of every
# message — submit_sm, submit_sm_resp, deliver_sm, deliver_sm_resp — are coded here directly; the unit
# tests check that they match smpplib's bytes and readings exactly.

SUBMIT_SM_ID = 0x00000004
SUBMIT_SM_RESP_ID = 0x80000004
DELIVER_SM_ID = 0x00000005
DELIVER_SM_RESP_ID = 0x80000005

_TLV = struct.Struct(">HH")
_TAG_MESSAGE_PAYLOAD = 0x0424
_TAG_RECEIPTED_MESSAGE_ID = 0x001E
_TAG_MESSAGE_STATE = 0x0427
_TAG_NETWORK_ERROR_CODE = 0x0423


def _cstr(value: str, limit: int) -> bytes:
    raw = value.encode("latin-1")[: limit - 1]
    return raw + b"\x00"


def _encode_sm(
    command_id: int,
    sequence: int,
    *,
    service_type: str,
    source_ton: int,
    source_npi: int,
    source_addr: str,
    dest_ton: int,
    dest_npi: int,
    destination_addr: str,
    esm_class: int,
    protocol_id: int,
    validity_period: str,
    registered_delivery: int,
    data_coding: int,
    short_message: bytes,
    tlvs: bytes = b"",
) -> bytes:
    if len(short_message) > 254:
        raise ValueError("short_message longer than 254 octets")
    body = b"".join(
        (
            _cstr(service_type, 6),
            bytes((source_ton, source_npi)),
            _cstr(source_addr, 21),
            bytes((dest_ton, dest_npi)),
            _cstr(destination_addr, 21),
            bytes((esm_class, protocol_id, 0)),  # priority_flag 0
            b"\x00",  # schedule_delivery_time: immediate
            _cstr(validity_period, 17),
            # replace_if_present_flag 0, sm_default_msg_id 0
            bytes((registered_delivery, 0, data_coding, 0, len(short_message))),
            short_message,
            tlvs,
        )
    )
    return HEADER.pack(16 + len(body), command_id, 0, sequence) + body


def encode_submit_sm(
    sequence: int,
    *,
    service_type: str,
    source_ton: int,
    source_npi: int,
    source_addr: str,
    dest_ton: int,
    dest_npi: int,
    destination_addr: str,
    esm_class: int,
    protocol_id: int,
    validity_period: str,
    registered_delivery: int,
    data_coding: int,
    short_message: bytes,
) -> bytes:
    """submit_sm (SMPP 3.4 §4.4.1) without optional parameters; short_message at most 254 octets."""
    return _encode_sm(
        SUBMIT_SM_ID,
        sequence,
        service_type=service_type,
        source_ton=source_ton,
        source_npi=source_npi,
        source_addr=source_addr,
        dest_ton=dest_ton,
        dest_npi=dest_npi,
        destination_addr=destination_addr,
        esm_class=esm_class,
        protocol_id=protocol_id,
        validity_period=validity_period,
        registered_delivery=registered_delivery,
        data_coding=data_coding,
        short_message=short_message,
    )


def encode_deliver_sm(
    sequence: int,
    *,
    source_ton: int,
    source_npi: int,
    source_addr: str,
    dest_ton: int,
    dest_npi: int,
    destination_addr: str,
    esm_class: int,
    data_coding: int,
    short_message: bytes,
    protocol_id: int = 0,
    receipted_message_id: str | None = None,
    message_state: int | None = None,
    network_error_code: bytes | None = None,
) -> bytes:
    """deliver_sm (SMPP 3.4 §4.6.1), with the receipt TLVs when given."""
    tlvs = b""  # in smpplib's order, so that both write the same bytes
    if network_error_code is not None:
        tlvs += _TLV.pack(_TAG_NETWORK_ERROR_CODE, len(network_error_code)) + network_error_code
    if message_state is not None:
        tlvs += _TLV.pack(_TAG_MESSAGE_STATE, 1) + bytes((message_state,))
    if receipted_message_id is not None:
        value = _cstr(receipted_message_id, 65)
        tlvs += _TLV.pack(_TAG_RECEIPTED_MESSAGE_ID, len(value)) + value
    return _encode_sm(
        DELIVER_SM_ID,
        sequence,
        service_type="",
        source_ton=source_ton,
        source_npi=source_npi,
        source_addr=source_addr,
        dest_ton=dest_ton,
        dest_npi=dest_npi,
        destination_addr=destination_addr,
        esm_class=esm_class,
        protocol_id=protocol_id,
        validity_period="",
        registered_delivery=0,
        data_coding=data_coding,
        short_message=short_message,
        tlvs=tlvs,
    )


def encode_response(command_id: int, sequence: int, status: int = ESME_ROK, message_id: str = "") -> bytes:
    """submit_sm_resp / deliver_sm_resp: a message_id C-string body (empty for deliver_sm_resp)."""
    body = _cstr(message_id, 65)
    return HEADER.pack(16 + len(body), command_id, status, sequence) + body


def decode_message_id(data: bytes) -> str:
    """The message_id of a submit_sm_resp (whole PDU given); "" when the body is empty."""
    end = data.find(b"\x00", 16)
    return data[16 : end if end >= 0 else len(data)].decode("latin-1")


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The fields of a deliver_sm (SMPP 3.4 §4.6.1) or submit_sm (§4.4.1) the gateway reads."""

    sequence: int
    source_addr: str
    destination_addr: str
    esm_class: int
    protocol_id: int
    data_coding: int
    short_message: bytes
    source_ton: int = 0
    source_npi: int = 0
    dest_ton: int = 0
    dest_npi: int = 0
    registered_delivery: int = 0
    validity_period: str = ""
    message_payload: bytes | None = None
    receipted_message_id: str | None = None
    message_state: int | None = None
    network_error_code: bytes | None = None

    @property
    def body(self) -> bytes:
        return self.short_message or self.message_payload or b""


def decode_short_message(data: bytes) -> ShortMessage:
    """Decode a whole deliver_sm or submit_sm PDU. Raises PduDecodeError on a truncated or inconsistent
    body."""
    _length, command_id, _status, sequence = HEADER.unpack_from(data)
    find = data.index
    try:
        pos = find(b"\x00", 16) + 1  # after service_type
        source_ton, source_npi = data[pos], data[pos + 1]
        end = find(b"\x00", pos + 2)
        source = data[pos + 2 : end]
        pos = end + 1
        dest_ton, dest_npi = data[pos], data[pos + 1]
        end = find(b"\x00", pos + 2)
        destination = data[pos + 2 : end]
        pos = end + 1
        esm_class, protocol_id = data[pos], data[pos + 1]
        pos = find(b"\x00", pos + 3) + 1  # after priority_flag and schedule_delivery_time
        end = find(b"\x00", pos)
        validity = data[pos:end]
        pos = end + 1
        registered_delivery = data[pos]
        pos += 2  # + replace_if_present_flag
        data_coding = data[pos]
        sm_length = data[pos + 2]
        pos += 3
        short_message = data[pos : pos + sm_length]
        if len(short_message) != sm_length:
            raise IndexError("short_message truncated")
        pos += sm_length
        payload = receipted = network_error = None
        state: int | None = None
        while pos + 4 <= len(data):
            tag, size = _TLV.unpack_from(data, pos)
            value = data[pos + 4 : pos + 4 + size]
            if len(value) != size:
                raise IndexError("TLV truncated")
            pos += 4 + size
            if tag == _TAG_RECEIPTED_MESSAGE_ID:
                receipted = value.rstrip(b"\x00").decode("latin-1")
            elif tag == _TAG_MESSAGE_STATE and size == 1:
                state = value[0]
            elif tag == _TAG_NETWORK_ERROR_CODE:
                network_error = value
            elif tag == _TAG_MESSAGE_PAYLOAD:
                payload = value
    except (ValueError, IndexError) as exc:
        raise PduDecodeError(command_id, sequence, f"malformed short message PDU: {exc}") from exc
    return ShortMessage(
        sequence=sequence,
        source_addr=source.decode("latin-1"),
        destination_addr=destination.decode("latin-1"),
        esm_class=esm_class,
        protocol_id=protocol_id,
        data_coding=data_coding,
        short_message=short_message,
        message_payload=payload,
        receipted_message_id=receipted,
        message_state=state,
        network_error_code=network_error,
        source_ton=source_ton,
        source_npi=source_npi,
        dest_ton=dest_ton,
        dest_npi=dest_npi,
        registered_delivery=registered_delivery,
        validity_period=validity.decode("latin-1"),
    )


decode_deliver_sm = decode_short_message
