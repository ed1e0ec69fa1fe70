"""The manufacturer's key file (docs/operations.md §7b, docs/protocol.md §3.2): the meters a utility
receives, each with its key wrapped under a transport key the utility and the factory share.

Pure: text in, values out. A file is CSV (a header row naming the columns, in any order) or JSON
(`{"format": "smsmeter-key-file/1", "meters": [{...}, ...]}`). Every row names a meter code (20 digits
with its check digit), the SIM's number, the key id, the 16-byte meter key wrapped with AES key wrap
(RFC 3394) under the transport key, as 48 hexadecimal digits, the protocol profile (binary | xml) and
the firmware; the meter kind is optional (electricity). `read_key_file` checks every row and unwraps
every key, so a file is either wholly good or answered with every bad row (line, field, reason).
The unwrapped keys exist only in the values it returns; nothing here writes or logs them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from billing.errors import BillingError
from meter_protocol.errors import InvalidMeterCode
from meter_protocol.meter_code import validate_meter_code

FORMAT = "smsmeter-key-file/1"
COLUMNS = ("meter_code", "msisdn", "key_id", "wrapped_key", "profile", "firmware", "kind")
REQUIRED = COLUMNS[:-1]
PROFILES = ("binary", "xml")
KINDS = ("electricity", "water", "gas", "heat")
KEY_BYTES = 16
WRAPPED_HEX_DIGITS = 48
TRANSPORT_KEY_BYTES = (16, 24, 32)
MAX_ROWS = 100_000
_WRAPPED = re.compile(f"[0-9a-fA-F]{{{WRAPPED_HEX_DIGITS}}}")


@dataclass(frozen=True, slots=True)
class Reject:
    line: int  # the file's line (CSV, the header is line 1) or the entry's position in "meters" (JSON)
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class KeyFileRow:
    line: int
    meter_code: str
    msisdn: str
    key_id: int
    key: bytes  # the meter key in the clear: only in memory, never written
    profile: str
    firmware: str
    kind: str

    def __repr__(self) -> str:  # a row may end up in a log or a traceback: never with its key
        return f"KeyFileRow(line={self.line}, meter_code={self.meter_code!r}, key_id={self.key_id})"


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One meter of a file the head end writes for the factory."""

    meter_code: str
    msisdn: str
    key_id: int
    key: bytes
    profile: str
    firmware: str
    kind: str

    def __repr__(self) -> str:
        return f"ExportRow(meter_code={self.meter_code!r}, key_id={self.key_id})"


class KeyFileError(BillingError):
    """What is wrong with a key file or its transport key."""


class KeyFileUnreadable(KeyFileError):
    """The file is neither a key file in CSV nor in JSON (no header, not JSON, not UTF-8 …)."""


class TransportKeyRefused(KeyFileError):
    """The transport key is malformed, or no key of the file unwraps under it."""


class KeyFileRejected(KeyFileError):
    def __init__(self, rejects: Sequence[Reject], rows: int) -> None:
        super().__init__(f"{len(rejects)} problems in {rows} rows; nothing was imported")
        self.rejects = list(rejects)
        self.rows = rows


def parse_transport_key(text: str) -> bytes:
    """The transport key from its hexadecimal form (32, 48 or 64 digits; spaces and a newline allowed)."""
    digits = re.sub(r"\s", "", text)
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise TransportKeyRefused("the transport key is not hexadecimal") from None
    if len(key) not in TRANSPORT_KEY_BYTES:
        raise TransportKeyRefused("the transport key is an AES key: 32, 48 or 64 hexadecimal digits")
    return key


def _entries(data: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KeyFileUnreadable(f"the file is not UTF-8 text: {exc}") from None
    if text.lstrip().startswith("{"):
        yield from _json_entries(text)
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise KeyFileUnreadable(
            f"the first row must name the columns; missing: {', '.join(missing)} (columns: {', '.join(COLUMNS)})"
        )
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        raise KeyFileUnreadable(f"unknown columns: {', '.join(unknown)} (columns: {', '.join(COLUMNS)})")
    for values in reader:
        cells = {h: v.strip() for h, v in zip(header, values, strict=False) if h}
        if any(cells.values()):
            yield reader.line_num, cells


def _json_entries(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeyFileUnreadable(f"the file is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeyFileUnreadable(f'a JSON key file is an object with "format": "{FORMAT}" and "meters"')
    meters = document.get("meters")
    if not isinstance(meters, list):
        raise KeyFileUnreadable('"meters" must be a list of objects')
    for number, entry in enumerate(meters, start=1):
        if not isinstance(entry, dict):
            yield number, {"": "not an object"}
            continue
        yield number, {str(k): _text(v) for k, v in entry.items()}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip()


def _row(number: int, cells: dict[str, str], transport_key: bytes) -> tuple[KeyFileRow | None, list[Reject], bool]:
    """(the row, its problems, whether its key unwrapped under the transport key)."""
    problems: list[Reject] = []

    def bad(field: str, reason: str) -> None:
        problems.append(Reject(number, field, reason))

    if "" in cells:
        bad("", cells[""])
        return None, problems, False
    for name in cells:
        if name not in COLUMNS:
            bad(name, "unknown field")
    code = ""
    try:
        code = validate_meter_code(cells.get("meter_code", ""))
    except InvalidMeterCode as exc:
        bad("meter_code", exc.problem if cells.get("meter_code") else "missing")
    msisdn = re.sub(r"[\s\-+]", "", cells.get("msisdn", ""))
    if not re.fullmatch(r"\d{5,15}", msisdn):
        bad("msisdn", "the SIM's number: 5 to 15 digits")
    key_id = -1
    text = cells.get("key_id", "")
    if re.fullmatch(r"\d{1,3}", text) and int(text) <= 255:
        key_id = int(text)
    else:
        bad("key_id", "a whole number 0 to 255")
    profile = cells.get("profile", "").lower()
    if profile not in PROFILES:
        bad("profile", f"one of {', '.join(PROFILES)}")
    firmware = cells.get("firmware", "")
    if not firmware:
        bad("firmware", "missing")
    elif len(firmware) > 50:
        bad("firmware", "at most 50 characters")
    kind = cells.get("kind", "").lower() or "electricity"
    if kind not in KINDS:
        bad("kind", f"one of {', '.join(KINDS)}")
    key, unwrapped = b"", False
    wrapped_hex = cells.get("wrapped_key", "")
    if not _WRAPPED.fullmatch(wrapped_hex):
        bad("wrapped_key", f"{WRAPPED_HEX_DIGITS} hexadecimal digits: a 16-byte key wrapped with RFC 3394")
    else:
        try:
            key = aes_key_unwrap(transport_key, bytes.fromhex(wrapped_hex))
            unwrapped = True
        except InvalidUnwrap:
            bad("wrapped_key", "does not unwrap under the transport key (its integrity check fails)")
    if problems:
        return None, problems, unwrapped
    return KeyFileRow(number, code, msisdn, key_id, key, profile, firmware, kind), [], True


def read_key_file(data: bytes, transport_key: bytes) -> list[KeyFileRow]:
    """Every row of the file, its key unwrapped under `transport_key`. Raises KeyFileUnreadable,
    TransportKeyRefused (no key of the file unwraps: the wrong transport key) or KeyFileRejected (every
    bad row: line, field, reason — a meter code or SIM number twice in the file is a bad row)."""
    if len(transport_key) not in TRANSPORT_KEY_BYTES:
        raise TransportKeyRefused("the transport key is an AES key of 16, 24 or 32 bytes")
    rows: list[KeyFileRow] = []
    rejects: list[Reject] = []
    wrapped_rows = unwrapped_rows = 0
    seen_codes: dict[str, int] = {}
    seen_numbers: dict[str, int] = {}
    count = 0
    for number, cells in _entries(data):
        count += 1
        if count > MAX_ROWS:
            raise KeyFileUnreadable(f"at most {MAX_ROWS} meters a file")
        row, problems, unwrapped = _row(number, cells, transport_key)
        if _WRAPPED.fullmatch(cells.get("wrapped_key", "")):
            wrapped_rows += 1
            unwrapped_rows += unwrapped
        rejects.extend(problems)
        if row is None:
            continue
        if row.meter_code in seen_codes:
            rejects.append(Reject(number, "meter_code", f"also on line {seen_codes[row.meter_code]}"))
            continue
        if row.msisdn in seen_numbers:
            rejects.append(Reject(number, "msisdn", f"also on line {seen_numbers[row.msisdn]}"))
            continue
        seen_codes[row.meter_code] = seen_numbers[row.msisdn] = number
        rows.append(row)
    if count == 0:
        raise KeyFileUnreadable("the file has no meters")
    if wrapped_rows and not unwrapped_rows:
        raise TransportKeyRefused(
            "no key in the file unwraps under this transport key: it is not the key the file was wrapped under"
        )
    if rejects:
        raise KeyFileRejected(rejects, count)
    return rows


def write_key_file(rows: Iterable[ExportRow], transport_key: bytes, *, as_json: bool = False) -> bytes:
    """The key file of `rows`, each key wrapped under `transport_key` (the format `read_key_file` reads)."""
    if len(transport_key) not in TRANSPORT_KEY_BYTES:
        raise TransportKeyRefused("the transport key is an AES key of 16, 24 or 32 bytes")
    entries = [
        {
            "meter_code": r.meter_code,
            "msisdn": r.msisdn,
            "key_id": r.key_id,
            "wrapped_key": aes_key_wrap(transport_key, r.key).hex(),
            "profile": r.profile,
            "firmware": r.firmware,
            "kind": r.kind,
        }
        for r in rows
    ]
    if as_json:
        return (json.dumps({"format": FORMAT, "meters": entries}, indent=1) + "\n").encode()
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(entries)
    return out.getvalue().encode()


__all__ = [
    "COLUMNS",
    "FORMAT",
    "ExportRow",
    "KeyFileError",
    "KeyFileRejected",
    "KeyFileRow",
    "KeyFileUnreadable",
    "Reject",
    "TransportKeyRefused",
    "parse_transport_key",
    "read_key_file",
    "write_key_file",
]
