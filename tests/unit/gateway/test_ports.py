"""What one SMS part may hold (gateway.ports.check_part)."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidPart
from gateway.ports import OutboundSms, check_part

METER = "254700000001"


@pytest.mark.parametrize(
    "sms",
    [
        OutboundSms(destination=METER, body=bytes(140)),
        OutboundSms(destination="+" + METER, body=bytes([5, 0, 3, 1, 2, 1]) + bytes(134), has_udh=True),
        OutboundSms(destination=METER, body=b"a" * 160, data_coding=0x00),
    ],
)
def test_parts_that_fit(sms: OutboundSms) -> None:
    check_part(sms)


@pytest.mark.parametrize(
    ("sms", "reason"),
    [
        (OutboundSms(destination=METER, body=bytes(141)), "at most 140"),
        (OutboundSms(destination=METER, body=b"a" * 161, data_coding=0x00), "at most 160"),
        (OutboundSms(destination=METER, body=bytes([9, 0, 3]), has_udh=True), "header"),
        (OutboundSms(destination=METER, body=b"", has_udh=True), "header"),
        (OutboundSms(destination="METER", body=b"\x01"), "phone number"),
    ],
)
def test_parts_that_do_not(sms: OutboundSms, reason: str) -> None:
    with pytest.raises(InvalidPart, match=reason):
        check_part(sms)
