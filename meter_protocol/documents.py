"""The XML document form of every message and of a whole frame (docs/protocol.md §11).

One element per message type in the namespace `urn:smsmeter:protocol:1`, one attribute per field
(camelCase), enums by name, booleans `true`/`false`, bytes in hex; tariff steps and load-profile
intervals are child elements. The schema `schema/smsmeter-protocol-1.xsd` ships in the package; it is
generated from the binary layouts (`schema_text()`), so the two cannot drift apart.

Parsing is hardened: a size limit, no DTD (a DOCTYPE is refused), no entities, no network, then XSD
validation. The XML-over-SMS profile carries the compact document deflated (RFC 1951, raw) with a
preset dictionary.
"""

from __future__ import annotations

import enum
import re
import zlib
from functools import cache
from importlib import resources
from typing import Any

from lxml import etree

from meter_protocol.codec import LAYOUTS
from meter_protocol.errors import BadXml, Oversize
from meter_protocol.messages import (
    MESSAGE_CLASSES,
    LoadProfile,
    Message,
    MessageType,
    ReadItems,
    SetTariff,
    TariffStep,
)

NAMESPACE = "urn:smsmeter:protocol:1"
SCHEMA_FILE = "smsmeter-protocol-1.xsd"
MAX_DOCUMENT_BYTES = 16384
_NS = "{" + NAMESPACE + "}"

# The preset dictionary of the XML-over-SMS profile (docs/protocol.md §11.3): fixed forever for version 1.
ZDICT = (
    b'<?xml version="1.0"?> xmlns="urn:smsmeter:protocol:1" transferId="" amountMinor="" '
    b'version="" effectiveAt="" kind="flat" kind="block" kind="time_of_use" standingChargeMinorPerDay="" '
    b'<step start="" priceMilliMinorPerKwh=""/> reason="operator" limitW="" utcAt="" items="registers balance '
    b'load_profile" profileSince="" newKeyId="" wrappedKey="" lowCreditMinor="" emergencyCreditMinor="" '
    b'friendlyStartMin="" friendlyEndMin="" friendlyDays="" utcOffsetMin="" reportIntervalS="" '
    b'ackedCounter="" ackedType="" result="ok" reason="none" creditMinor="" takenAt="" importWh="" '
    b'exportWh="" powerW="" voltageDv="" relayClosed="true" emergencyActive="false" tariffVersion="" '
    b'lastTransferId="" occurredAt="" event="" value="" tamperLatched="false" startAt="" intervalS="" '
    b'<interval wh=""/> <topUp <setTariff <relayOff <relayOn <setPowerLimit <timeSync <readRequest '
    b"<keyChange <configure <clearTamper <ping <ack <readings <balanceReport <eventReport "
    b"<periodicReport <loadProfile </setTariff></loadProfile>"
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _element_name(mtype: MessageType) -> str:
    return _camel(mtype.name.lower())


ELEMENT_NAMES: dict[MessageType, str] = {t: _element_name(t) for t in MessageType}
_TYPES_BY_ELEMENT: dict[str, MessageType] = {v: k for k, v in ELEMENT_NAMES.items()}

_XSD_INTS = {
    "B": ("xs:unsignedByte", None),
    "H": ("xs:unsignedShort", None),
    "I": ("xs:unsignedInt", None),
    "Q": ("xs:unsignedLong", None),
    "h": ("xs:short", None),
    "i": ("xs:int", None),
    "q": ("xs:long", None),
}


def _field_kinds(mtype: MessageType) -> list[tuple[str, str, Any]]:
    """(python name, struct code, converter) of the fixed fields, in wire order."""
    return [(name, code, conv) for name, code, conv in LAYOUTS[mtype]]


def _enum_class(conv: Any) -> type[enum.Enum] | None:
    if isinstance(conv, type) and issubclass(conv, enum.Enum):
        return conv
    if conv is not None and conv.__name__ == "_read_items":
        return ReadItems
    return None


def _is_bool(conv: Any) -> bool:
    return conv is not None and getattr(conv, "__name__", "") == "_flag"


# --- message -> XML ---------------------------------------------------------------------------------


def _text_of(value: Any, conv: Any) -> str:
    if isinstance(value, ReadItems):
        return " ".join(str(m.name).lower() for m in ReadItems if m in value)
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def message_element(message: Message) -> etree._Element:
    mtype = message.message_type
    element = etree.Element(_NS + ELEMENT_NAMES[mtype], nsmap={None: NAMESPACE})  # type: ignore[dict-item]
    for name, _, conv in _field_kinds(mtype):
        element.set(_camel(name), _text_of(getattr(message, name), conv))
    if isinstance(message, SetTariff):
        for step in message.steps:
            etree.SubElement(
                element,
                _NS + "step",
                start=str(step.start),
                priceMilliMinorPerKwh=str(step.price_milli_minor_per_kwh),
            )
    elif isinstance(message, LoadProfile):
        for energy in message.energies_wh:
            etree.SubElement(element, _NS + "interval", wh=str(energy))
    return element


def message_to_xml(message: Message, *, compact: bool = False) -> bytes:
    """The XML document of `message` (UTF-8). `compact`: no declaration and no indentation."""
    element = message_element(message)
    if compact:
        return etree.tostring(element, encoding="utf-8", xml_declaration=False)
    return etree.tostring(element, encoding="utf-8", xml_declaration=True, pretty_print=True)


# --- XML -> message ---------------------------------------------------------------------------------

_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


@cache
def _schema() -> etree.XMLSchema:
    source = resources.files("meter_protocol").joinpath("schema", SCHEMA_FILE).read_bytes()
    return etree.XMLSchema(etree.fromstring(source, _parser()))


def parse_document(data: bytes) -> etree._Element:
    """The root element of a hardened parse of `data`, validated against the schema. Raises BadXml."""
    if not isinstance(data, bytes):
        raise BadXml("a document is bytes")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise Oversize(len(data), MAX_DOCUMENT_BYTES, "document")
    if _DOCTYPE.search(data):
        raise BadXml("DTDs and entity declarations are not allowed")
    try:
        root = etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise BadXml(str(exc) or "not well-formed") from None
    if root is None:
        raise BadXml("empty document")
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise BadXml("DTDs are not allowed")
    try:
        _schema().assertValid(root)
    except etree.DocumentInvalid as exc:
        raise BadXml(f"not valid: {exc}") from None
    return root


def _value_of(text: str, code: str, conv: Any) -> Any:
    enum_class = _enum_class(conv)
    if enum_class is ReadItems:
        items = ReadItems(0)
        for token in text.split():
            items |= ReadItems[token.upper()]
        return items
    if enum_class is not None:
        return enum_class[text.upper()]
    if _is_bool(conv):
        return text in ("true", "1")
    if code.endswith("s"):
        return bytes.fromhex(text)
    return int(text)


def message_from_element(element: etree._Element) -> Message:
    """The message of a schema-valid message element. Raises BadXml or MalformedField."""
    local = etree.QName(element).localname
    mtype = _TYPES_BY_ELEMENT.get(local)
    if mtype is None or etree.QName(element).namespace != NAMESPACE:
        raise BadXml(f"unknown element {local}")
    kwargs: dict[str, Any] = {}
    try:
        for name, code, conv in _field_kinds(mtype):
            text = element.get(_camel(name))
            if text is None:
                raise BadXml(f"{local} lacks {_camel(name)}")
            kwargs[name] = _value_of(text.strip(), code, conv)
        if mtype is MessageType.SET_TARIFF:
            kwargs["steps"] = tuple(
                TariffStep(int(step.get("start", "")), int(step.get("priceMilliMinorPerKwh", "")))
                for step in element.iterchildren(_NS + "step")
            )
        elif mtype is MessageType.LOAD_PROFILE:
            kwargs["energies_wh"] = tuple(int(i.get("wh", "")) for i in element.iterchildren(_NS + "interval"))
    except (ValueError, KeyError) as exc:
        raise BadXml(f"bad value in {local}: {exc}") from None
    return MESSAGE_CLASSES[mtype](**kwargs)


def message_from_xml(data: bytes) -> Message:
    """The message in the XML document `data`. Raises BadXml, Oversize or MalformedField."""
    return message_from_element(parse_document(data))


# --- the XML-over-SMS profile -----------------------------------------------------------------------


def compress_document(document: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, ZDICT)
    return compressor.compress(document) + compressor.flush()


def decompress_document(data: bytes) -> bytes:
    """Inflate a profile-1 payload, at most MAX_DOCUMENT_BYTES. Raises BadXml or Oversize."""
    decompressor = zlib.decompressobj(-15, ZDICT)
    try:
        document = decompressor.decompress(data, MAX_DOCUMENT_BYTES + 1)
    except zlib.error as exc:
        raise BadXml(f"not a deflate stream: {exc}") from None
    if len(document) > MAX_DOCUMENT_BYTES or decompressor.unconsumed_tail:
        raise Oversize(MAX_DOCUMENT_BYTES + 1, MAX_DOCUMENT_BYTES, "document")
    if not decompressor.eof:
        raise BadXml("truncated deflate stream")
    if decompressor.unused_data:
        raise BadXml("bytes after the deflate stream")
    return document


# --- the schema, generated from the binary layouts --------------------------------------------------


def _type_name(cls: type) -> str:
    return cls.__name__[0].lower() + cls.__name__[1:]


def _xsd_attribute(name: str, code: str, conv: Any) -> str:
    enum_class = _enum_class(conv)
    attr = _camel(name)
    if enum_class is ReadItems:
        return f'      <xs:attribute name="{attr}" type="readItems" use="required"/>'
    if enum_class is not None:
        return f'      <xs:attribute name="{attr}" type="{_type_name(enum_class)}" use="required"/>'
    if _is_bool(conv):
        return f'      <xs:attribute name="{attr}" type="xs:boolean" use="required"/>'
    if code.endswith("s"):
        return f'      <xs:attribute name="{attr}" type="wrappedKey" use="required"/>'
    return f'      <xs:attribute name="{attr}" type="{_XSD_INTS[code][0]}" use="required"/>'


def schema_text() -> str:
    """The XSD text shipped as `schema/smsmeter-protocol-1.xsd`."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!-- smsmeter meter protocol, version 1: the document form of every message (docs/protocol.md §11).",
        "     Generated from the binary layouts by meter_protocol.documents.schema_text(). -->",
        f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{NAMESPACE}"',
        f'           xmlns="{NAMESPACE}" elementFormDefault="qualified">',
    ]
    enums: dict[str, type[enum.Enum]] = {}
    for fs in LAYOUTS.values():
        for _, _, conv in fs:
            cls = _enum_class(conv)
            if cls is not None and cls is not ReadItems:
                enums[_type_name(cls)] = cls
    for type_name, cls in sorted(enums.items()):
        out.append(f'  <xs:simpleType name="{type_name}">')
        out.append('    <xs:restriction base="xs:string">')
        out.extend(f'      <xs:enumeration value="{m.name.lower()}"/>' for m in cls)
        out.append("    </xs:restriction>")
        out.append("  </xs:simpleType>")
    out += [
        '  <xs:simpleType name="readItem">',
        '    <xs:restriction base="xs:string">',
        *[f'      <xs:enumeration value="{str(m.name).lower()}"/>' for m in ReadItems],
        "    </xs:restriction>",
        "  </xs:simpleType>",
        '  <xs:simpleType name="readItems">',
        '    <xs:restriction><xs:simpleType><xs:list itemType="readItem"/></xs:simpleType>',
        '      <xs:minLength value="1"/></xs:restriction>',
        "  </xs:simpleType>",
        '  <xs:simpleType name="wrappedKey">',
        '    <xs:restriction base="xs:hexBinary"><xs:length value="24"/></xs:restriction>',
        "  </xs:simpleType>",
        '  <xs:simpleType name="meterCode">',
        '    <xs:restriction base="xs:string"><xs:pattern value="[0-9]{20}"/></xs:restriction>',
        "  </xs:simpleType>",
    ]
    for mtype in MessageType:
        name = ELEMENT_NAMES[mtype]
        out.append(f'  <xs:element name="{name}" type="{name}Type"/>')
        out.append(f'  <xs:complexType name="{name}Type">')
        if mtype is MessageType.SET_TARIFF:
            out += [
                "    <xs:sequence>",
                '      <xs:element name="step" minOccurs="1" maxOccurs="64">',
                "        <xs:complexType>",
                '          <xs:attribute name="start" type="xs:unsignedInt" use="required"/>',
                '          <xs:attribute name="priceMilliMinorPerKwh" type="xs:unsignedInt" use="required"/>',
                "        </xs:complexType>",
                "      </xs:element>",
                "    </xs:sequence>",
            ]
        elif mtype is MessageType.LOAD_PROFILE:
            out += [
                "    <xs:sequence>",
                '      <xs:element name="interval" minOccurs="0" maxOccurs="96">',
                "        <xs:complexType>",
                '          <xs:attribute name="wh" type="xs:unsignedInt" use="required"/>',
                "        </xs:complexType>",
                "      </xs:element>",
                "    </xs:sequence>",
            ]
        out.extend(_xsd_attribute(n, c, v) for n, c, v in _field_kinds(mtype))
        out.append("  </xs:complexType>")
    out += [
        "  <!-- a whole frame, as explain() renders it: the header and the message inside -->",
        '  <xs:element name="frame">',
        "    <xs:complexType>",
        "      <xs:choice>",
        *[f'        <xs:element ref="{ELEMENT_NAMES[t]}"/>' for t in MessageType],
        '        <xs:element name="undecodable">',
        '          <xs:complexType><xs:attribute name="reason" type="xs:string" use="required"/></xs:complexType>',
        "        </xs:element>",
        "      </xs:choice>",
        '      <xs:attribute name="version" type="xs:unsignedByte" use="required"/>',
        '      <xs:attribute name="profile" use="required">',
        '        <xs:simpleType><xs:restriction base="xs:string">',
        '          <xs:enumeration value="binary"/><xs:enumeration value="xml"/>',
        "        </xs:restriction></xs:simpleType>",
        "      </xs:attribute>",
        '      <xs:attribute name="direction" use="required">',
        '        <xs:simpleType><xs:restriction base="xs:string">',
        '          <xs:enumeration value="downlink"/><xs:enumeration value="uplink"/>',
        "        </xs:restriction></xs:simpleType>",
        "      </xs:attribute>",
        '      <xs:attribute name="keyId" type="xs:unsignedByte" use="required"/>',
        '      <xs:attribute name="meterCode" type="meterCode" use="required"/>',
        '      <xs:attribute name="counter" type="xs:unsignedInt" use="required"/>',
        "    </xs:complexType>",
        "  </xs:element>",
        "</xs:schema>",
        "",
    ]
    return "\n".join(out)
