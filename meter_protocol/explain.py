"""Operators' view of a frame: its XML document and a one-line summary (docs/protocol.md §11.2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from meter_protocol.documents import NAMESPACE, message_element, message_from_element, parse_document
from meter_protocol.errors import BadXml, ProtocolError, UnsupportedVersion
from meter_protocol.frame import VERSION, FrameHeader, Profile, decode_frame, encode_frame, peek_header
from meter_protocol.messages import (
    Ack,
    BalanceReport,
    ClearTamper,
    Configure,
    Direction,
    EventReport,
    KeyChange,
    LoadProfile,
    Message,
    MessageType,
    PeriodicReport,
    Ping,
    Readings,
    ReadItems,
    ReadRequest,
    RelayOff,
    RelayOn,
    SetPowerLimit,
    SetTariff,
    TimeSync,
    TopUp,
)

_NS = "{" + NAMESPACE + "}"


@dataclass(frozen=True, slots=True)
class Explanation:
    summary: str  # one line
    document: str | None  # the <frame> document; None when not even the header can be read
    header: FrameHeader | None
    message: Message | None
    error: ProtocolError | None  # why the frame could not be (fully) decoded


def explain(frame: bytes, key: bytes | None = None) -> Explanation:
    """Render `frame` for people. Never raises: what cannot be decoded is explained as such. Without
    `key` (or with the wrong one) only the header is shown. No replay check is made here."""
    try:
        header = peek_header(frame)
    except ProtocolError as exc:
        size = len(frame) if isinstance(frame, bytes | bytearray) else 0
        return Explanation(f"unreadable frame ({size} bytes): {exc.reason}", None, None, None, exc)
    root = etree.Element(_NS + "frame", nsmap={None: NAMESPACE})  # type: ignore[dict-item]
    root.set("version", str(header.version))
    root.set("profile", header.profile.name.lower())
    root.set("direction", header.direction.name.lower())
    root.set("keyId", str(header.key_id))
    root.set("meterCode", header.meter_code)
    root.set("counter", str(header.counter))
    arrow = "head end -> meter" if header.direction is Direction.DOWNLINK else "meter -> head end"
    prefix = f"{arrow} {header.meter_code} #{header.counter} key {header.key_id}"
    message: Message | None = None
    error: ProtocolError | None = None
    if key is None:
        etree.SubElement(root, _NS + "undecodable", reason="no key given")
        summary = f"{prefix}: {_type_name(header.message_type)}, sealed (no key given)"
    else:
        try:
            message = decode_frame(frame, key=key).message
        except ProtocolError as exc:
            error = exc
            etree.SubElement(root, _NS + "undecodable", reason=exc.reason)
            summary = f"{prefix}: {_type_name(header.message_type)}, NOT decoded: {exc.reason}"
        else:
            root.append(message_element(message))
            summary = f"{prefix}: {summarize(message)}"
    document = etree.tostring(root, encoding="unicode", pretty_print=True)
    return Explanation(summary, document, header, message, error)


def _type_name(mtype: MessageType) -> str:
    return mtype.name.lower().replace("_", " ")


def _when(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def summarize(message: Message) -> str:
    """One line saying what `message` means."""
    m = message
    if isinstance(m, TopUp):
        return f"top-up of {m.amount_minor} minor units, transfer {m.transfer_id}"
    if isinstance(m, SetTariff):
        when = "at once" if m.effective_at == 0 else f"from {_when(m.effective_at)}"
        return (
            f"tariff v{m.version} {m.kind.name.lower().replace('_', '-')}, {len(m.steps)} step(s), {when}, "
            f"standing charge {m.standing_charge_minor_per_day} minor/day"
        )
    if isinstance(m, RelayOff | RelayOn):
        return f"relay {'off' if isinstance(m, RelayOff) else 'on'} ({m.reason.name.lower()})"
    if isinstance(m, SetPowerLimit):
        return f"power limit {m.limit_w} W" if m.limit_w else "no power limit"
    if isinstance(m, TimeSync):
        return f"time sync to {_when(m.utc_at)}"
    if isinstance(m, ReadRequest):
        items = ", ".join(str(i.name).lower() for i in ReadItems if i in m.items)
        since = f" since {_when(m.profile_since)}" if ReadItems.LOAD_PROFILE in m.items else ""
        return f"read {items}{since}"
    if isinstance(m, KeyChange):
        return f"key change to key id {m.new_key_id}"
    if isinstance(m, Configure):
        friendly = (
            f"friendly {_minute(m.friendly_start_min)}-{_minute(m.friendly_end_min)}"
            if m.friendly_start_min != m.friendly_end_min
            else "no friendly hours"
        )
        sign = "+" if m.utc_offset_min >= 0 else "-"
        offset = f"UTC{sign}{_minute(abs(m.utc_offset_min))}"
        return (
            f"configure: low credit {m.low_credit_minor}, emergency credit {m.emergency_credit_minor}, "
            f"{friendly}, friendly days 0x{m.friendly_days:02x}, {offset}, report every {m.report_interval_s} s"
        )
    if isinstance(m, ClearTamper):
        return "clear tamper"
    if isinstance(m, Ping):
        return "ping"
    if isinstance(m, Ack):
        try:
            acked = _type_name(MessageType(m.acked_type))
        except ValueError:
            acked = f"type 0x{m.acked_type:02x}"
        reason = "" if m.reason == 0 else f" ({m.reason.name.lower()})"
        return f"ack of #{m.acked_counter} ({acked}): {m.result.name.lower()}{reason}, credit {m.credit_minor}"
    if isinstance(m, Readings):
        return (
            f"readings at {_when(m.taken_at)}: import {m.import_wh} Wh, export {m.export_wh} Wh, "
            f"{m.power_w} W, {m.voltage_dv / 10:.1f} V"
        )
    if isinstance(m, BalanceReport):
        return (
            f"balance at {_when(m.taken_at)}: credit {m.credit_minor}, relay {'closed' if m.relay_closed else 'open'}"
            f"{', emergency credit' if m.emergency_active else ''}, tariff v{m.tariff_version}, "
            f"last transfer {m.last_transfer_id}"
        )
    if isinstance(m, EventReport):
        return f"event {m.event.name.lower()} at {_when(m.occurred_at)} (value {m.value})"
    if isinstance(m, PeriodicReport):
        flags = [n for n, on in (("emergency credit", m.emergency_active), ("tamper", m.tamper_latched)) if on]
        return (
            f"periodic report at {_when(m.taken_at)}: import {m.import_wh} Wh, {m.power_w} W, credit {m.credit_minor}, "
            f"relay {'closed' if m.relay_closed else 'open'}{''.join(', ' + f for f in flags)}"
        )
    assert isinstance(m, LoadProfile)
    return (
        f"load profile from {_when(m.start_at)}: {len(m.energies_wh)} x {m.interval_s} s, "
        f"{sum(m.energies_wh)} Wh in all"
    )


def frame_from_document(document: bytes, *, key: bytes) -> bytes:
    """Seal the `<frame>` document (as `explain` renders it) back into the frame it describes: same
    header, same message, so the same bytes. Raises BadXml, MalformedField or another ProtocolError."""
    root = parse_document(document)
    if etree.QName(root).localname != "frame":
        raise BadXml("the root element is not a frame")
    children = list(root)
    if len(children) != 1 or etree.QName(children[0]).localname == "undecodable":
        raise BadXml("the frame document holds no message")
    message = message_from_element(children[0])
    try:
        profile = Profile[str(root.get("profile", "")).upper()]
        version = int(str(root.get("version")))
        key_id = int(str(root.get("keyId")))
        counter = int(str(root.get("counter")))
    except (KeyError, ValueError):
        raise BadXml("bad frame attributes") from None
    if version != VERSION:
        raise UnsupportedVersion(version)
    if root.get("direction") != message.message_type.direction.name.lower():
        raise BadXml("the direction does not match the message")
    return encode_frame(
        message, meter_code=str(root.get("meterCode")), key=key, key_id=key_id, counter=counter, profile=profile
    )
