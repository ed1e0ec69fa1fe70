"""SMPP 3.4 delivery receipts (§5.2.12 esm_class, §5.3.2.12 message_state, §5.3.2.35 receipted_message_id,
Appendix B receipt text) and message-id normalisation, shared by the client transport and the simulated
server.

Message ids. SMSCs write the same id in different ways: hex or decimal, upper or lower case, with
leading zeros, and some write the submit_sm_resp id in hex but the receipt text id in decimal. The rule
(`normalise_message_id`): when the base an id is written in is declared (`IdFormat.HEX`/`DECIMAL`, per
SMSC, separately for submit_sm_resp ids and receipt ids), the id is read as a number in that base and
written back as lower-case hex without leading zeros — so a hex resp id and a decimal receipt id of the
same message compare equal. With `IdFormat.AS_IS` (the default) the id is only trimmed and lower-cased,
and leading zeros are dropped when it is all hex digits ("00A1" → "a1"). An id that is not a number in
its declared base falls back to the AS_IS rule.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime

from gateway.ports import Receipt, ReceiptState


class IdFormat(enum.Enum):
    AS_IS = "as-is"
    HEX = "hex"
    DECIMAL = "decimal"


_HEX = re.compile(r"[0-9a-f]+")


def normalise_message_id(raw: str, fmt: IdFormat = IdFormat.AS_IS) -> str:
    """The canonical form of an SMSC message id (see the module docstring)."""
    text = raw.strip().lower()
    if fmt is not IdFormat.AS_IS:
        try:
            return format(int(text, 16 if fmt is IdFormat.HEX else 10), "x")
        except ValueError:
            pass
    if text and _HEX.fullmatch(text):
        return text.lstrip("0") or "0"
    return text


STATE_BY_NUMBER = {
    1: ReceiptState.ENROUTE,
    2: ReceiptState.DELIVERED,
    3: ReceiptState.EXPIRED,
    4: ReceiptState.DELETED,
    5: ReceiptState.UNDELIVERABLE,
    6: ReceiptState.ACCEPTED,
    7: ReceiptState.UNKNOWN,
    8: ReceiptState.REJECTED,
}
NUMBER_BY_STATE = {v: k for k, v in STATE_BY_NUMBER.items()}
_STATE_BY_TEXT = {s.value: s for s in ReceiptState} | {
    "DELIVERED": ReceiptState.DELIVERED,
    "UNDELIVERABLE": ReceiptState.UNDELIVERABLE,
    "ACCEPTED": ReceiptState.ACCEPTED,
    "REJECTED": ReceiptState.REJECTED,
    "ENROUTE": ReceiptState.ENROUTE,
}

_RECEIPT_ID = re.compile(rb"\bid:\s*([0-9A-Za-z_\-]+)", re.IGNORECASE)
_RECEIPT_STAT = re.compile(rb"\bstat:\s*([A-Za-z_]+)", re.IGNORECASE)
_RECEIPT_ERR = re.compile(rb"\berr:\s*([0-9A-Fa-f]+)", re.IGNORECASE)
_RECEIPT_DONE = re.compile(rb"\bdone date:\s*(\d{10,12})", re.IGNORECASE)
_RECEIPT_STANDARD = re.compile(
    rb"id:([0-9A-Za-z_\-]+) sub:\S* dlvrd:\S* submit date:\d* done date:(\d{10,12}) stat:([A-Za-z_]+) "
    rb"err:([0-9A-Fa-f]+)"
)


class ReceiptFormatError(ValueError):
    """A deliver_sm flagged as a receipt carries neither a receipted_message_id nor a parsable text."""


def _receipt_state(value: str) -> ReceiptState:
    return _STATE_BY_TEXT.get(value.upper(), ReceiptState.UNKNOWN)


def _receipt_time(digits: bytes) -> datetime | None:
    """YYMMDDhhmm[ss] (SMPP 3.4 Appendix B) as a UTC time; None when it is no valid date."""
    try:
        return datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]) if len(digits) >= 12 else 0,
            tzinfo=UTC,
        )
    except ValueError:
        return None


def parse_receipt(
    *,
    receipted_message_id: bytes | str | None,
    message_state: int | None,
    network_error_code: bytes | None,
    text: bytes,
    id_format: IdFormat = IdFormat.AS_IS,
) -> Receipt:
    """A delivery receipt from a deliver_sm's TLVs, else from its `id:… stat:… err:…` text.

    The TLVs win where present (they are the SMPP 3.4 way); the text fills what they lack. The done date
    of the text is taken as UTC. Raises ReceiptFormatError when no message id can be found.
    """
    message_id: str | None = None
    if receipted_message_id:
        raw = receipted_message_id
        message_id = (raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw).rstrip("\x00")
    standard = _RECEIPT_STANDARD.match(text)
    if standard is not None:  # the Appendix B layout, in one pass
        text_id, done_digits, stat_text, err_text = standard.groups()
        if message_state is not None and message_state in STATE_BY_NUMBER:
            state = STATE_BY_NUMBER[message_state]
        else:
            state = _receipt_state(stat_text.decode("ascii"))
        if network_error_code and len(network_error_code) == 3:
            error_code: int | None = int.from_bytes(network_error_code[1:], "big")
        else:
            digits = err_text.decode("ascii")
            error_code = int(digits, 10) if digits.isdigit() else int(digits, 16)
        return Receipt(
            message_id=normalise_message_id(message_id or text_id.decode("ascii"), id_format),
            state=state,
            error_code=error_code,
            done_at=_receipt_time(done_digits),
        )
    match = _RECEIPT_ID.search(text)
    if not message_id and match:
        message_id = match.group(1).decode("ascii")
    if not message_id:
        raise ReceiptFormatError(f"receipt without a message id: {text[:80]!r}")
    state = ReceiptState.UNKNOWN
    if message_state is not None and message_state in STATE_BY_NUMBER:
        state = STATE_BY_NUMBER[message_state]
    elif (stat := _RECEIPT_STAT.search(text)) is not None:
        state = _receipt_state(stat.group(1).decode("ascii"))
    error_code = None
    if network_error_code and len(network_error_code) == 3:
        error_code = int.from_bytes(network_error_code[1:], "big")
    elif (err := _RECEIPT_ERR.search(text)) is not None:
        digits = err.group(1).decode("ascii")
        error_code = int(digits, 10) if digits.isdigit() else int(digits, 16)
    done = _RECEIPT_DONE.search(text)
    return Receipt(
        message_id=normalise_message_id(message_id, id_format),
        state=state,
        error_code=error_code,
        done_at=_receipt_time(done.group(1)) if done else None,
    )


def receipt_text(
    message_id: str, state: ReceiptState, error_code: int, submitted_at: datetime, done_at: datetime
) -> bytes:
    """The SMPP 3.4 Appendix B receipt text, as SMSCs write it."""
    delivered = "001" if state is ReceiptState.DELIVERED else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted_at:%y%m%d%H%M} "
        f"done date:{done_at:%y%m%d%H%M} stat:{state.value} err:{error_code:03d} text:"
    ).encode("ascii")
