"""STS token codec (IEC 62055-41): the 66-bit token, its CRC, the ciphers (EA07 STA, EA11 MISTY1),
DKGA02 and the key change token pair.

The token data block is 64 bits, most significant first: subclass (4), random (4), TID (24),
a 16-bit field (the amount for class 0, the register or limit for class 2) and CRC-16 (16).
The CRC covers the class (2) above those 48 bits, packed into 7 bytes, with the reflected
polynomial 0xA001 from 0xFFFF, its two bytes exchanged. The block is encrypted with the
decoder key; the 2 class bits then replace ciphertext bits 28 and 27, and the two bits they
displace become bits 65 and 64 of the token, written as 20 decimal digits. Class 1 (initiate meter
test or display) tokens are sealed the same way without encryption. A class 2 power limit (maximum
power, phase power unbalance limit) is carried with the amount's exponent and mantissa, in W.

The STA (EA07) is 16 rounds of nibble substitution (one of two tables, chosen by a key bit),
a bit permutation, and a one-bit left rotation of the key register. The key register is loaded
from the decoder key's bytes least significant first (the order the published conformance
numbers require), complemented and rotated right by 12 bits.

A decoder key of 8 bytes selects EA07, one of 16 bytes EA11 (MISTY1 over the block as 8 bytes,
most significant first).

Key change (class 2, subclasses 3 and 4, encrypted with the meter's CURRENT decoder key): the first
section carries the key expiry number's high nibble, the new KRN, the rollover bit (the meter starts
its TID memory again: the base date moves on), a reserved bit, the new KT and the new key's high 32
bits; the second the expiry number's low nibble, the new TI and the low 32 bits. The new key is
taken as a number from its bytes least significant first, as the STA key register is.

DKGA02: the PAN block (the IIN's last digits and the DRN, 16 digits) XOR the control block
(KT, SGC, TI, KRN, FFFFFF) is encrypted with single DES under the 64-bit vending key; the
result XOR that input XOR the vending key, bytes in reverse order, is the decoder key.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from Crypto.Cipher import DES

from meter_protocol.sts.errors import StsError, TokenRejected
from meter_protocol.sts.misty1 import decrypt_block, encrypt_block, expand_key

_MASK64 = (1 << 64) - 1
_SUBSTITUTION_1 = (14, 10, 7, 9, 12, 3, 2, 5, 13, 0, 15, 1, 4, 8, 6, 11)
_SUBSTITUTION_2 = (12, 8, 2, 13, 7, 6, 1, 3, 11, 5, 9, 15, 0, 4, 10, 14)
_INVERSE_1 = tuple(_SUBSTITUTION_1.index(v) for v in range(16))
_INVERSE_2 = tuple(_SUBSTITUTION_2.index(v) for v in range(16))
_PERMUTATION = (
    55, 42, 10, 18, 24, 21, 44, 35, 2, 22, 56, 43, 27, 58, 9, 50,
    6, 36, 12, 61, 37, 38, 53, 16, 62, 3, 7, 4, 32, 20, 63, 25,
    51, 52, 54, 33, 49, 19, 46, 29, 48, 31, 23, 30, 41, 28, 13, 5,
    40, 60, 39, 11, 15, 17, 1, 0, 57, 34, 59, 8, 47, 14, 45, 26,
)  # fmt: skip

BASE_DATE_1993 = datetime(1993, 1, 1, tzinfo=UTC)
BASE_DATE_2014 = datetime(2014, 1, 1, tzinfo=UTC)
_TID_LIMIT = 1 << 24
_POWERS_OF_TEN = (1, 10, 100, 1000)


class CreditKind(enum.IntEnum):
    """Class 0 subclasses: what the credit buys."""

    ELECTRICITY = 0  # 0.1 kWh
    WATER = 1
    GAS = 2
    TIME = 3
    ELECTRICITY_CURRENCY = 4  # in the meter's currency unit (here: minor units)
    WATER_CURRENCY = 5
    GAS_CURRENCY = 6
    TIME_CURRENCY = 7


class ManagementKind(enum.IntEnum):
    """Class 2 subclasses this codec issues."""

    SET_MAXIMUM_POWER = 0
    CLEAR_CREDIT = 1
    SET_FIRST_SECTION_DECODER_KEY = 3
    SET_SECOND_SECTION_DECODER_KEY = 4
    CLEAR_TAMPER = 5
    SET_MAXIMUM_PHASE_POWER_UNBALANCE_LIMIT = 6
    SET_THIRD_SECTION_DECODER_KEY = 8  # 128-bit keys only
    SET_FOURTH_SECTION_DECODER_KEY = 9


@dataclass(frozen=True, slots=True)
class DecoderKeyParameters:
    """What DKGA02 diversifies a vending key with. `drn` is the meter's 11-digit number."""

    iin: str
    drn: str
    key_type: int
    supply_group_code: str
    tariff_index: str
    key_revision: int


@dataclass(frozen=True, slots=True)
class DecodedToken:
    """The decrypted data block. `payload` is its 48 bits below the subclass; `random`, `tid` and
    `field` read it with the credit/register layout (a key change section reads it with
    `read_key_change`)."""

    token_class: int
    subclass: int
    random: int
    tid: int
    field: int
    payload: int = 0


@dataclass(frozen=True, slots=True)
class KeyChange:
    """What a key change token set sets: the new decoder key (8 bytes for EA07: a pair of tokens; 16 bytes for
    EA11/MISTY1: four tokens, which also carry the supply group code) and its parameters."""

    new_key: bytes
    key_revision: int
    key_type: int
    tariff_index: int
    key_expiry: int = 255
    rollover: bool = False
    supply_group_code: int = 0  # carried by the four-token set only (sections 3 and 4)


@dataclass(frozen=True, slots=True)
class KeyChangeSection:
    """One decoded key change token: section 1 carries revision/type/rollover, section 2 the tariff index,
    sections 3 and 4 (128-bit keys) the supply group code's low and high 12 bits. `key_half` is the 32 bits
    of the new key the section carries (whatever their place in the key)."""

    section: int
    key_expiry_nibble: int
    key_half: int
    key_revision: int = 0
    key_type: int = 0
    rollover: bool = False
    tariff_index: int = 0
    supply_group_part: int = 0


def _rotl(value: int, bits: int) -> int:
    bits %= 64
    return ((value << bits) | (value >> (64 - bits))) & _MASK64


def _key_register(decoder_key: bytes) -> int:
    if len(decoder_key) != 8:
        raise StsError("an STA decoder key is 8 bytes")
    return _rotl(~int.from_bytes(decoder_key, "little") & _MASK64, 64 - 12)


def _substitute(block: int, key: int, offset: int, first: tuple[int, ...], second: tuple[int, ...]) -> int:
    out = 0
    for i in range(16):
        nibble = (block >> (4 * i)) & 15
        table = second if (key >> (4 * i + offset)) & 1 else first
        out |= table[nibble] << (4 * i)
    return out


def _permute(block: int) -> int:
    out = 0
    for i, target in enumerate(_PERMUTATION):
        if (block >> i) & 1:
            out |= 1 << target
    return out


def _unpermute(block: int) -> int:
    out = 0
    for i, source in enumerate(_PERMUTATION):
        if (block >> source) & 1:
            out |= 1 << i
    return out


def sta_encrypt(decoder_key: bytes, block: int) -> int:
    """EA07 over one 64-bit block."""
    key = _key_register(decoder_key)
    for _ in range(16):
        block = _permute(_substitute(block, key, 3, _SUBSTITUTION_1, _SUBSTITUTION_2))
        key = _rotl(key, 1)
    return block


def _encrypt(decoder_key: bytes, block: int) -> int:
    if len(decoder_key) == 16:
        return encrypt_block(expand_key(decoder_key), block)
    return sta_encrypt(decoder_key, block)


def _decrypt(decoder_key: bytes, block: int) -> int:
    if len(decoder_key) == 16:
        return decrypt_block(expand_key(decoder_key), block)
    return sta_decrypt(decoder_key, block)


def sta_decrypt(decoder_key: bytes, block: int) -> int:
    key = _rotl(_key_register(decoder_key), 16)
    for _ in range(16):
        key = _rotl(key, 63)
        block = _substitute(_unpermute(block), key, 3, _INVERSE_1, _INVERSE_2)
    return block


def token_crc(token_class: int, upper48: int) -> int:
    """CRC-16 over class (2 bits) and the data block's upper 48 bits."""
    crc = 0xFFFF
    for byte in ((token_class << 48) | upper48).to_bytes(7, "big"):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return ((crc & 0xFF) << 8) | (crc >> 8)


def token_identifier(issued_at: datetime, base_date: datetime = BASE_DATE_1993) -> int:
    """Minutes since the base date (24 bits); raises StsError past the range (the 2024 rollover)."""
    minutes = int((issued_at - base_date).total_seconds()) // 60
    if not 0 <= minutes < _TID_LIMIT:
        raise StsError("the issue time is outside the base date's TID range")
    return minutes


def encode_amount(units: int) -> int:
    """16-bit amount field (2-bit exponent, 14-bit mantissa) for `units` (0.1 kWh, ...)."""
    offset = 0
    for exponent in range(4):
        scale = _POWERS_OF_TEN[exponent]
        mantissa, remainder = divmod(units - offset, scale)
        if mantissa < 1 << 14:
            if remainder or mantissa < 0:
                raise StsError(f"{units} cannot be carried exactly in a token amount")
            return (exponent << 14) | mantissa
        offset += (1 << 14) * scale
    raise StsError(f"{units} is above the largest token amount")


def largest_amount_at_most(units: int) -> int:
    """The largest amount a token carries exactly that is not above `units` (the rest stays behind)."""
    if units < 0:
        raise StsError("an amount is not negative")
    offset = 0
    for exponent in range(4):
        scale = _POWERS_OF_TEN[exponent]
        top = offset + ((1 << 14) - 1) * scale
        if units <= top:
            return offset + ((units - offset) // scale) * scale
        offset += (1 << 14) * scale
    return offset - 1000


def decode_amount(field: int) -> int:
    exponent, mantissa = field >> 14, field & 0x3FFF
    return mantissa * _POWERS_OF_TEN[exponent] + sum((1 << 14) * _POWERS_OF_TEN[n] for n in range(exponent))


def _token_number(token_class: int, subclass: int, random: int, tid: int, field: int, decoder_key: bytes) -> str:
    if not (0 <= random < 16 and 0 <= tid < _TID_LIMIT and 0 <= field < 1 << 16):
        raise StsError("a token field is out of range")
    return _sealed(token_class, (subclass << 44) | (random << 40) | (tid << 16) | field, decoder_key)


def _sealed(token_class: int, upper48: int, decoder_key: bytes | None) -> str:
    block = (upper48 << 16) | token_crc(token_class, upper48)
    cipher = block if decoder_key is None else _encrypt(decoder_key, block)
    displaced = (cipher >> 27) & 3
    number = (cipher & ~(3 << 27)) | (token_class << 27)
    number |= ((displaced >> 1) << 65) | ((displaced & 1) << 64)
    return f"{number:020d}"


def encode_credit_token(kind: CreditKind, units: int, tid: int, random: int, decoder_key: bytes) -> str:
    """A class 0 credit token, 20 digits."""
    return _token_number(0, kind, random, tid, encode_amount(units), decoder_key)


_POWER_LIMITS = (ManagementKind.SET_MAXIMUM_POWER, ManagementKind.SET_MAXIMUM_PHASE_POWER_UNBALANCE_LIMIT)


def encode_management_token(kind: ManagementKind, value: int, tid: int, random: int, decoder_key: bytes) -> str:
    """A class 2 token: the maximum power (or phase unbalance limit) in W, the register to clear, or 0 for clear
    tamper. A power limit is carried with the amount's exponent and mantissa (`encode_amount`: exact, or
    StsError), so limits above 16383 W keep their value; read it back with `decode_amount`."""
    field = encode_amount(value) if kind in _POWER_LIMITS else value
    return _token_number(2, kind, random, tid, field, decoder_key)


def encode_meter_test_token(control: int, manufacturer_code: int, *, four_digit_manufacturer: bool = False) -> str:
    """A class 1 token (initiate meter test or display), not encrypted: subclass 0 carries 36 control bits and
    the 2-digit manufacturer code (8 bits), subclass 1 28 control bits and the 4-digit code (16 bits)."""
    control_bits, code_bits = (28, 16) if four_digit_manufacturer else (36, 8)
    if not (0 <= control < 1 << control_bits and 0 <= manufacturer_code < 1 << code_bits):
        raise StsError("a test token's control or manufacturer code is out of range")
    upper48 = (int(four_digit_manufacturer) << 44) | (control << code_bits) | manufacturer_code
    return _sealed(1, upper48, None)


def decode_token(digits: str, decoder_key: bytes) -> DecodedToken:
    """What a meter does with 20 typed digits; raises TokenRejected. Class 1 (test) tokens are not encrypted:
    the meter reads them without its key."""
    digits = "".join(digits.split())
    if len(digits) != 20 or not digits.isdigit() or int(digits) >= 1 << 66:
        raise TokenRejected("a token is 20 digits")
    number = int(digits)
    token_class = (number >> 27) & 3
    displaced = (((number >> 65) & 1) << 1) | ((number >> 64) & 1)
    cipher = (number & _MASK64 & ~(3 << 27)) | (displaced << 27)
    block = cipher if token_class == 1 else _decrypt(decoder_key, cipher)
    upper48 = block >> 16
    if token_crc(token_class, upper48) != block & 0xFFFF:
        raise TokenRejected("the token does not decode with this meter's key")
    return DecodedToken(
        token_class=token_class,
        subclass=upper48 >> 44,
        random=(upper48 >> 40) & 15,
        tid=(upper48 >> 16) & 0xFFFFFF,
        field=upper48 & 0xFFFF,
        payload=upper48 & ((1 << 44) - 1),
    )


def _check_change(change: KeyChange) -> None:
    if not (0 <= change.key_revision < 16 and 0 <= change.key_type < 4):
        raise StsError("the key revision is 0-15 and the key type 0-3")
    if not (0 <= change.tariff_index < 100 and 0 <= change.key_expiry < 256):
        raise StsError("the tariff index is 00-99 and the key expiry number 0-255")


def _first_two(change: KeyChange, high32: int, low32: int) -> tuple[int, int]:
    first = (
        (ManagementKind.SET_FIRST_SECTION_DECODER_KEY << 44)
        | ((change.key_expiry >> 4) << 40)
        | (change.key_revision << 36)
        | (int(change.rollover) << 35)
        | (change.key_type << 32)
        | high32
    )
    second = (
        (ManagementKind.SET_SECOND_SECTION_DECODER_KEY << 44)
        | ((change.key_expiry & 15) << 40)
        | (change.tariff_index << 32)
        | low32
    )
    return first, second


def encode_key_change_tokens(current_key: bytes, change: KeyChange) -> tuple[str, str]:
    """The key change pair (class 2 subclasses 3 then 4), both encrypted with the meter's current key."""
    if len(change.new_key) != 8:
        raise StsError("a key change pair carries a 64-bit decoder key (EA07)")
    _check_change(change)
    new = int.from_bytes(change.new_key, "little")
    first, second = _first_two(change, new >> 32, new & 0xFFFFFFFF)
    return _sealed(2, first, current_key), _sealed(2, second, current_key)


def encode_key_change_set(current_key: bytes, change: KeyChange) -> tuple[str, str, str, str]:
    """The four-token set for a 128-bit (MISTY1) decoder key, in the order they are entered, all encrypted with
    the meter's current key. The new key, read most significant byte first, is NKHO (its top 32 bits, in the
    1st section, subclass 3, with KEN high nibble, KRN, rollover and KT as in the pair), NKMO2 (3rd section,
    subclass 8, with the SGC's low 12 bits), NKMO1 (4th section, subclass 9, with the SGC's high 12 bits) and
    NKLO (2nd section, subclass 4, with KEN low nibble and the TI); the SGC is a 24-bit binary number."""
    if len(change.new_key) != 16:
        raise StsError("a four-token key change carries a 128-bit decoder key (EA11)")
    _check_change(change)
    if not 0 <= change.supply_group_code < 1 << 24:
        raise StsError("the supply group code is a 24-bit number")
    new = int.from_bytes(change.new_key, "big")
    high, middle2, middle1, low = ((new >> shift) & 0xFFFFFFFF for shift in (96, 64, 32, 0))
    first, second = _first_two(change, high, low)
    sgc = change.supply_group_code
    third = (ManagementKind.SET_THIRD_SECTION_DECODER_KEY << 44) | ((sgc & 0xFFF) << 32) | middle2
    fourth = (ManagementKind.SET_FOURTH_SECTION_DECODER_KEY << 44) | ((sgc >> 12) << 32) | middle1
    return (
        _sealed(2, first, current_key),
        _sealed(2, second, current_key),
        _sealed(2, third, current_key),
        _sealed(2, fourth, current_key),
    )


def read_key_change(decoded: DecodedToken) -> KeyChangeSection:
    """The fields of a decoded key change token; raises StsError for any other token."""
    payload = decoded.payload
    nibble, half = (payload >> 40) & 15, payload & 0xFFFFFFFF
    if decoded.token_class == 2 and decoded.subclass == ManagementKind.SET_FIRST_SECTION_DECODER_KEY:
        return KeyChangeSection(
            section=1,
            key_expiry_nibble=nibble,
            key_half=half,
            key_revision=(payload >> 36) & 15,
            rollover=bool((payload >> 35) & 1),
            key_type=(payload >> 32) & 3,
        )
    if decoded.token_class == 2 and decoded.subclass == ManagementKind.SET_SECOND_SECTION_DECODER_KEY:
        return KeyChangeSection(section=2, key_expiry_nibble=nibble, key_half=half, tariff_index=(payload >> 32) & 0xFF)
    if decoded.token_class == 2 and decoded.subclass in (
        ManagementKind.SET_THIRD_SECTION_DECODER_KEY,
        ManagementKind.SET_FOURTH_SECTION_DECODER_KEY,
    ):
        section = 3 if decoded.subclass == ManagementKind.SET_THIRD_SECTION_DECODER_KEY else 4
        return KeyChangeSection(
            section=section, key_expiry_nibble=0, key_half=half, supply_group_part=(payload >> 32) & 0xFFF
        )
    raise StsError("not a key change token")


def combine_key_change(*sections: KeyChangeSection) -> KeyChange:
    """The key change the sections carry, in the order they must be entered: 1, 2 (a 64-bit key) or 1, 2, 3, 4
    (a 128-bit key)."""
    numbers = tuple(s.section for s in sections)
    if numbers not in ((1, 2), (1, 2, 3, 4)):
        raise StsError("a key change is the first section, then the second (then the third and the fourth)")
    first, second = sections[0], sections[1]
    if len(sections) == 2:
        key = ((first.key_half << 32) | second.key_half).to_bytes(8, "little")
        sgc = 0
    else:
        third, fourth = sections[2], sections[3]
        whole = (first.key_half << 96) | (third.key_half << 64) | (fourth.key_half << 32) | second.key_half
        key = whole.to_bytes(16, "big")
        sgc = (fourth.supply_group_part << 12) | third.supply_group_part
    return KeyChange(
        new_key=key,
        key_revision=first.key_revision,
        key_type=first.key_type,
        tariff_index=second.tariff_index,
        key_expiry=(first.key_expiry_nibble << 4) | second.key_expiry_nibble,
        rollover=first.rollover,
        supply_group_code=sgc,
    )


def _pan_block(parameters: DecoderKeyParameters) -> str:
    if len(parameters.drn) == 13 and parameters.iin == "0000":
        return (parameters.iin + parameters.drn)[-16:]
    if len(parameters.drn) != 11 or not parameters.drn.isdigit():
        raise StsError("a DRN is 11 digits (13 with the IIN 0000)")
    return (parameters.iin + parameters.drn)[-16:]


def decoder_key_dkga02(vending_key: bytes, parameters: DecoderKeyParameters) -> bytes:
    """DKGA02 (single DES vending key) → the 8-byte decoder key, in its published byte order."""
    control = (
        f"{parameters.key_type:1d}{parameters.supply_group_code:0>6}{parameters.tariff_index:0>2}"
        f"{parameters.key_revision:1d}FFFFFF"
    )
    if len(control) != 16 or len(vending_key) != 8:
        raise StsError("the key parameters do not fit DKGA02")
    data = bytes(a ^ b for a, b in zip(bytes.fromhex(_pan_block(parameters)), bytes.fromhex(control), strict=True))
    encrypted = DES.new(vending_key, DES.MODE_ECB).encrypt(data)
    return bytes(e ^ d ^ k for e, d, k in zip(encrypted, data, vending_key, strict=True))[::-1]


def _luhn_digit(digits: str) -> str:
    total = 0
    for n, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if n % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


def _meter_pan(parameters: DecoderKeyParameters) -> str:
    """The 18-digit MeterPAN: the IIN, the DRN and the Luhn check digit over both (IEC 62055-41, 6.1.4)."""
    body = parameters.iin + parameters.drn
    if len(body) != 17 or not body.isdigit():
        raise StsError("a MeterPAN is the IIN and the DRN in 17 digits, and its check digit")
    return body + _luhn_digit(body)


def _fields(*values: str) -> bytes:
    """A DKGA04 Label or Context: the number of fields, then each field as its length and its ASCII digits."""
    out = bytearray([len(values)])
    for value in values:
        out.append(len(value))
        out += value.encode("ascii")
    return bytes(out)


def decoder_key_dkga04(
    vending_key: bytes, parameters: DecoderKeyParameters, *, base_date: datetime, key_bits: int = 128
) -> bytes:
    """DKGA04 (IEC 62055-41 ed. 3): KDF-HMAC-SHA-256 (NIST SP 800-108, feedback mode, no IV and no counter, so
    one HMAC), keyed with the whole vending key (160 bits or more), over Label || 0x00 || Context || L.

    Label: the DKGA code "04", the base date's year in two digits ("93", "14", "35"), the EA code ("07" for a
    64-bit key, "11" for 128-bit MISTY1) and the TI. Context: the SGC, the KT, the KRN and the 18-digit
    MeterPAN. Each is a count of fields, then every field as one length byte and its ASCII digits; L is the key
    length in bits, 32 bits most significant first. The decoder key is the first `key_bits` of the HMAC: as
    they come for EA11, byte-reversed for EA07 (as DKGA02's key). Checked against the published STS6 case
    (59386323472137426967) and the DKGA04 + STA credit tokens of the compliance suite."""
    if len(vending_key) < 20:
        raise StsError("a DKGA04 vending key is at least 160 bits")
    if key_bits not in (64, 128):
        raise StsError("a DKGA04 decoder key is 64 (EA07) or 128 (EA11) bits")
    if not (0 <= parameters.key_type < 16 and 0 <= parameters.key_revision < 16):
        raise StsError("the key type and key revision are one digit each")
    label = _fields(
        "04", f"{base_date.year % 100:02d}", "07" if key_bits == 64 else "11", f"{parameters.tariff_index:0>2}"
    )
    context = _fields(
        f"{parameters.supply_group_code:0>6}",
        f"{parameters.key_type:X}",
        f"{parameters.key_revision:X}",
        _meter_pan(parameters),
    )
    data = label + b"\x00" + context + key_bits.to_bytes(4, "big")
    output = hmac.new(vending_key, data, hashlib.sha256).digest()[: key_bits // 8]
    return output[::-1] if key_bits == 64 else output
