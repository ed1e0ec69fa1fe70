"""Text notices as SMS through the gateway's transport, from the same short number as the meters' frames.

GSM-7 (data coding 0x00; one unpacked septet per octet, as SMPP carries it) when every character is in
the GSM 03.38 alphabet, else UCS-2 (data coding 0x08, UTF-16 big-endian); long texts are split into
concatenated parts (UDH 00 03 ref total seq) of 153 septets or 67 UCS-2 characters.

`read_sent_texts` is the way back: the parts a channel took (the simulated SMSC's record of what it was
given) joined into the texts people received, for the simulator's SMS outbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

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


def _text_parts(text: str, reference: int) -> list[tuple[bytes, bool, int]]:
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
        for body, has_udh, dcs in _text_parts(text, reference):
            await self._transport.submit(
                OutboundSms(
                    destination=msisdn.lstrip("+"),
                    body=body,
                    has_udh=has_udh,
                    data_coding=dcs,
                    validity_s=self._validity_s,
                )
            )


TEXT_CODINGS = frozenset({0x00, 0x08})  # GSM-7 and UCS-2: an SMS for a person, not a meter's 8-bit frame
_SEPTETS = dict(enumerate(GSM7_BASIC))
_EXT_SEPTETS = {code: char for char, code in _EXT_CODES.items()}


@dataclass(frozen=True, slots=True)
class SentText:
    """One text as its receiver reads it, joined from its parts."""

    to: str  # the phone number, digits
    text: str
    sent_at: datetime  # when the channel took its first part
    parts: int  # parts taken (a long text: several)
    complete: bool  # every part of a concatenated text was taken
    lost: bool  # the network lost a part (the simulated network's loss rate)


@dataclass(frozen=True, slots=True)
class SentPart:
    sms: OutboundSms
    at: datetime
    lost: bool = False


def _gsm7_text(septets: bytes) -> str:
    """Unpacked septets (one a byte) as text; 0x1B escapes to the extension table."""
    out: list[str] = []
    escaped = False
    for septet in septets:
        if escaped:
            out.append(_EXT_SEPTETS.get(septet, " "))
            escaped = False
        elif septet == 0x1B:
            escaped = True
        else:
            out.append(_SEPTETS.get(septet & 0x7F, "?"))
    return "".join(out)


def read_text(body: bytes, data_coding: int) -> str:
    """A text SMS's user data (no header) as a string: UCS-2 (0x08), Latin-1 (0x03), else GSM-7 unpacked.
    Never raises."""
    if data_coding == 0x08:
        return body[: len(body) // 2 * 2].decode("utf-16-be", "replace")
    if data_coding == 0x03:
        return body.decode("latin-1")
    return _gsm7_text(body)


def _concatenation(header: bytes) -> tuple[int, int, int] | None:
    """(reference, total, sequence) from a user-data header's concatenation element (8- or 16-bit reference)."""
    i = 0
    while i + 1 < len(header):
        iei, length = header[i], header[i + 1]
        value = header[i + 2 : i + 2 + length]
        if iei == 0x00 and length == 3:
            return value[0], value[1], value[2]
        if iei == 0x08 and length == 4:
            return (value[0] << 8) | value[1], value[2], value[3]
        i += 2 + length
    return None


def _payload_text(sms: OutboundSms, payload: bytes) -> str:
    if sms.data_coding == 0x08:
        return payload.decode("utf-16-be", errors="replace")
    return _gsm7_text(payload)


def read_sent_texts(parts: Iterable[SentPart]) -> list[SentText]:
    """The text SMS among `parts` (in the order the channel took them), each long text joined from its parts;
    newest first. Parts of a text with a missing part are joined as far as they go (`complete` False)."""
    texts: list[SentText] = []
    pending: dict[tuple[str, int, int], tuple[int, dict[int, str], SentPart, bool]] = {}
    for part in parts:
        sms = part.sms
        if sms.data_coding not in TEXT_CODINGS:
            continue
        body = sms.body
        concat = None
        if sms.has_udh and body:
            header_len = body[0] + 1
            concat, body = _concatenation(body[1:header_len]), body[header_len:]
        if concat is None or concat[1] <= 1:
            texts.append(SentText(sms.destination, _payload_text(sms, body), part.at, 1, True, part.lost))
            continue
        ref, total, seq = concat
        key = (sms.destination, ref, total)
        slot, seen, first, lost = pending.get(key) or (len(texts), {}, part, False)
        if not seen:
            texts.append(SentText(sms.destination, "", part.at, 0, False, False))  # its place, by its first part
        seen[seq] = _payload_text(sms, body)
        lost = lost or part.lost
        complete = len(seen) == total
        joined = "".join(seen[i] for i in sorted(seen))
        texts[slot] = SentText(sms.destination, joined, first.at, len(seen), complete, lost)
        if complete:
            pending.pop(key, None)  # the reference may be used again by a later text
        else:
            pending[key] = (slot, seen, first, lost)
    return sorted(reversed(texts), key=lambda t: t.sent_at, reverse=True)  # the same instant: the later first
