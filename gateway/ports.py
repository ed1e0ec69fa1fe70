"""The transport port: what the dispatcher needs from an SMS channel (SMPP, GSM modem, simulator).

A transport sends one SMS part at a time and reports, through callbacks it is given at construction,
delivery receipts and mobile-originated messages. It knows nothing of commands, meters or the database.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.errors import InvalidPart

MAX_USER_DATA_OCTETS = 140  # 3GPP TS 23.040 §9.2.3.24: TP-UD of one SMS
MAX_GSM7_SEPTETS = 160


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One SMS part to send. `body` is the complete user data: the UDH (if any) followed by the payload."""

    destination: str  # the meter's SIM number (MSISDN, digits, international form without '+')
    body: bytes
    has_udh: bool = False  # esm_class 0x40 / UDHI: `body` starts with a user-data header
    data_coding: int = 0x04  # 8-bit data; 0x00 GSM-7 / 0x08 UCS-2 for text notices
    validity_s: int | None = None  # relative validity period; None: the SMSC's default
    protocol_id: int = 0x00


def check_part(sms: OutboundSms) -> None:
    """Raise InvalidPart unless `sms` fits one SMS: 140 octets of user data (UDH included), or 160 GSM-7
    septets (one per octet of `body`) when data_coding is 0x00 without a UDH."""
    limit = MAX_GSM7_SEPTETS if sms.data_coding == 0x00 and not sms.has_udh else MAX_USER_DATA_OCTETS
    if len(sms.body) > limit:
        raise InvalidPart(f"{len(sms.body)} bytes of user data, at most {limit} fit one SMS")
    if sms.has_udh and (not sms.body or sms.body[0] + 1 > len(sms.body)):
        raise InvalidPart("the user data header is longer than the user data")
    if not sms.destination.removeprefix("+").isdigit():
        raise InvalidPart(f"destination {sms.destination!r} is not a phone number")


class ReceiptState(enum.Enum):
    """The final state a delivery receipt reports (SMPP 3.4 message_state / receipt `stat:`)."""

    DELIVERED = "DELIVRD"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"
    UNDELIVERABLE = "UNDELIV"
    ACCEPTED = "ACCEPTD"
    UNKNOWN = "UNKNOWN"
    REJECTED = "REJECTD"
    ENROUTE = "ENROUTE"  # intermediate; not final


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str  # normalised by the transport exactly as its submit() results are (see pdu_smpp)
    state: ReceiptState
    error_code: int | None
    done_at: datetime | None  # UTC


@dataclass(frozen=True, slots=True)
class InboundSms:
    source: str  # sender MSISDN
    destination: str  # the number it was sent to (must be our short number)
    body: bytes  # user data including the UDH when has_udh
    has_udh: bool
    data_coding: int
    received_at: datetime  # UTC


ReceiptHandler = Callable[[Receipt], Awaitable[None]]
InboundHandler = Callable[[InboundSms], Awaitable[None]]


class TransportState(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    BOUND = "bound"
    RECONNECTING = "reconnecting"


class Transport(Protocol):
    """An SMS channel. Use as an async context manager (connects on entry, closes on exit).

    `submit` returns the SMSC's message id once the channel accepted the part (state 0:1), or raises a
    `gateway.errors.TransportError` subclass: NotConnected, SubmitTimeout and Throttled mean "send the
    same part again later"; SmscRejected(status) and InvalidPart mean it will not go.
    Receipts carry message ids normalised exactly as `submit` returns them, and may arrive before
    `submit` returns (some SMSCs send the receipt before the submit_sm_resp).
    Receipts and inbound messages are handed to the handlers given at construction.
    """

    @property
    def state(self) -> TransportState: ...

    def submit(self, sms: OutboundSms) -> Awaitable[str]: ...  # an async def, or a def handing back a future

    async def __aenter__(self) -> Transport: ...

    async def __aexit__(self, *exc: object) -> None: ...
