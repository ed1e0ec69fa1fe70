"""Text notices as SMS through the gateway's transport, from the same short number as the meters' frames.

GSM-7 (data coding 0x00; one unpacked septet per octet, as SMPP carries it) when every character is in
the GSM 03.38 alphabet, else UCS-2 (data coding 0x08, UTF-16 big-endian); long texts are split into
concatenated parts (UDH 00 03 ref total seq) of 153 septets or 67 UCS-2 characters.
"""

from __future__ import annotations

import itertools

from billing.rules.notices import GSM7_BASIC, GSM7_EXTENSION, SmsEncoding, sms_sizing
from gateway.ports import OutboundSms, Transport

_BASIC = {c: i for i, c in enumerate(GSM7_BASIC)}
_EXT_CODES = {
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
    "\f": 0x0A,
}
assert set(_EXT_CODES) == set(GSM7_EXTENSION)


def gsm7_septets(text: str) -> list[bytes]:
    """Each character as its septets (two for the extension table), unpacked."""
    return [bytes([_BASIC[c]]) if c in _BASIC else bytes([0x1B, _EXT_CODES[c]]) for c in text]


def text_parts(text: str, reference: int) -> list[tuple[bytes, bool, int]]:
    """[(user data, has_udh, data_coding)] for one text. A character is never split across parts (an
    escaped GSM-7 character is two septets, a UCS-2 character outside the BMP two code units)."""
    if sms_sizing(text).encoding is SmsEncoding.GSM7:
        chars, dcs, cost, multi = gsm7_septets(text), 0x00, 1, 153
    else:
        chars, dcs, cost, multi = [c.encode("utf-16-be") for c in text], 0x08, 2, 67
    if sms_sizing(text).parts == 1:
        return [(b"".join(chars), False, dcs)]
    chunks: list[bytes] = []
    current = b""
    for char in chars:
        if (len(current) + len(char)) // cost > multi:
            chunks.append(current)
            current = b""
        current += char
    chunks.append(current)
    ref = reference & 0xFF
    total = len(chunks)
    return [(bytes([0x05, 0x00, 0x03, ref, total, seq]) + chunk, True, dcs) for seq, chunk in enumerate(chunks, 1)]


class TransportTextSender:
    """A `billing.notices.TextSender` on a gateway transport."""

    def __init__(self, transport: Transport, *, validity_s: int | None = 86400) -> None:
        self._transport = transport
        self._validity_s = validity_s
        self._references = itertools.count(1)

    async def send_text(self, msisdn: str, text: str) -> None:
        reference = next(self._references)
        for body, has_udh, dcs in text_parts(text, reference):
            await self._transport.submit(
                OutboundSms(
                    destination=msisdn.lstrip("+"),
                    body=body,
                    has_udh=has_udh,
                    data_coding=dcs,
                    validity_s=self._validity_s,
                )
            )
