"""Key change token pairs against the published CTSA05 numbers, and the reference STS meter's keypad:
TID memory, key expiry, the key change and the 2024 rollover to the 2014 base date."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from meter_protocol.sts import (
    BASE_DATE_1993,
    BASE_DATE_2014,
    CreditKind,
    DecoderKeyParameters,
    KeyChange,
    ManagementKind,
    Outcome,
    StsError,
    StsMeterState,
    combine_key_change,
    decode_token,
    decoder_key_dkga02,
    encode_credit_token,
    encode_key_change_tokens,
    encode_management_token,
    enter_token,
    read_key_change,
    token_identifier,
)

VUDK = bytes.fromhex("abababababababab")


def _key(iin: str, drn: str, ti: str, krn: int = 1) -> bytes:
    return decoder_key_dkga02(VUDK, DecoderKeyParameters(iin, drn, 2, "123456", ti, krn))


@pytest.mark.parametrize(
    ("iin", "drn", "old_ti", "new_ti", "first", "second"),
    [
        ("600727", "00000000000", "01", "02", "51638423060042734509", "15361891762113502242"),  # CTSA05 step 1
        ("600727", "00000000000", "02", "01", "26553210520543055412", "00943705441908264439"),  # step 2
        ("000001", "00000000008", "01", "02", "36495265416911568628", "35908059266238070883"),  # step 3
    ],
)
def test_ctsa05_key_change_pairs(iin: str, drn: str, old_ti: str, new_ti: str, first: str, second: str) -> None:
    old, new = _key(iin, drn, old_ti), _key(iin, drn, new_ti)
    change = KeyChange(new_key=new, key_revision=1, key_type=2, tariff_index=int(new_ti), key_expiry=255)
    assert encode_key_change_tokens(old, change) == (first, second)
    sections = [read_key_change(decode_token(t, old)) for t in (first, second)]
    assert combine_key_change(*sections) == change


def test_the_sections_are_checked() -> None:
    old = _key("600727", "00000000000", "01")
    first, second = encode_key_change_tokens(old, KeyChange(_key("600727", "00000000000", "02"), 2, 2, 2))
    one, two = (read_key_change(decode_token(t, old)) for t in (first, second))
    with pytest.raises(StsError):
        combine_key_change(two, one)
    with pytest.raises(StsError):
        read_key_change(decode_token(encode_credit_token(CreditKind.ELECTRICITY, 1, 5, 1, old), old))
    with pytest.raises(StsError):
        encode_key_change_tokens(old, KeyChange(bytes(16), 1, 2, 1))


def _meter() -> StsMeterState:
    return StsMeterState(decoder_key=_key("600727", "00000000000", "01"), memory_size=3)


def test_the_meter_credits_a_token_once_and_refuses_old_and_foreign_ones() -> None:
    meter = _meter()
    token = encode_credit_token(CreditKind.ELECTRICITY, 125, 1000, 3, meter.decoder_key)
    meter, shown = enter_token(meter, token)
    assert (shown.outcome, shown.units, meter.credit()) == (Outcome.ACCEPTED, 125, 125)
    again, shown = enter_token(meter, token)
    assert (shown.outcome, again) == (Outcome.USED, meter)
    for tid in (1001, 1002, 1003):
        meter, shown = enter_token(meter, encode_credit_token(CreditKind.WATER, 1, tid, 0, meter.decoder_key))
        assert shown.outcome is Outcome.ACCEPTED
    assert meter.tids == (1001, 1002, 1003)
    assert meter.credit(CreditKind.WATER) == 3
    late = encode_credit_token(CreditKind.ELECTRICITY, 10, 999, 0, meter.decoder_key)
    assert enter_token(meter, late)[1].outcome is Outcome.OLD
    other = encode_credit_token(CreditKind.ELECTRICITY, 10, 2000, 0, _key("000001", "00000000008", "01"))
    assert enter_token(meter, other)[1].outcome is Outcome.REJECTED


def test_management_tokens_apply_and_an_expired_key_is_refused() -> None:
    meter = replace(_meter(), tampered=True, credit_units=(50, 0, 0, 0, 0, 0, 0, 0))
    key = meter.decoder_key
    meter, _ = enter_token(meter, encode_management_token(ManagementKind.SET_MAXIMUM_POWER, 1000, 10, 0, key))
    meter, _ = enter_token(meter, encode_management_token(ManagementKind.CLEAR_TAMPER, 0, 11, 0, key))
    meter, _ = enter_token(meter, encode_management_token(ManagementKind.CLEAR_CREDIT, 0xFFFF, 12, 0, key))
    assert (meter.maximum_power_w, meter.tampered, meter.credit_units) == (1000, False, (0,) * 8)
    short_lived = replace(_meter(), key_expiry=1)
    assert enter_token(short_lived, encode_credit_token(CreditKind.ELECTRICITY, 1, 2 << 16, 0, key))[1].outcome == (
        Outcome.EXPIRED
    )


def test_the_2024_rollover_key_change_moves_the_meter_to_the_2014_base_date() -> None:
    meter = _meter()
    late_2024 = datetime(2024, 11, 1, tzinfo=UTC)
    meter, _ = enter_token(
        meter, encode_credit_token(CreditKind.ELECTRICITY, 10, token_identifier(late_2024), 0, meter.decoder_key)
    )
    new_key = _key("600727", "00000000000", "01", krn=2)
    first, second = encode_key_change_tokens(
        meter.decoder_key, KeyChange(new_key, key_revision=2, key_type=2, tariff_index=1, rollover=True)
    )
    meter, shown = enter_token(meter, first)
    assert shown.outcome is Outcome.KEY_SECTION_HELD
    assert meter.decoder_key != new_key
    meter, shown = enter_token(meter, second)
    assert shown.outcome is Outcome.KEY_CHANGED
    assert (meter.decoder_key, meter.key_revision, meter.base_date, meter.tids) == (new_key, 2, BASE_DATE_2014, ())
    after = datetime(2025, 1, 10, tzinfo=UTC)
    tid = token_identifier(after, BASE_DATE_2014)
    assert tid < token_identifier(late_2024, BASE_DATE_1993)
    meter, shown = enter_token(meter, encode_credit_token(CreditKind.ELECTRICITY, 10, tid, 0, new_key))
    assert shown.outcome is Outcome.ACCEPTED
    assert meter.credit() == 20


def test_a_second_section_alone_is_refused() -> None:
    meter = _meter()
    _, second = encode_key_change_tokens(meter.decoder_key, KeyChange(bytes(8), 1, 2, 1))
    assert enter_token(meter, second)[1].outcome is Outcome.REJECTED


def test_tokens_under_a_misty1_decoder_key_round_trip() -> None:
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    token = encode_credit_token(CreditKind.ELECTRICITY, 1, 5871715, 5, key)
    decoded = decode_token(token, key)
    assert (decoded.token_class, decoded.tid, decoded.random) == (0, 5871715, 5)
    meter, shown = enter_token(StsMeterState(decoder_key=key), token)
    assert shown.outcome is Outcome.ACCEPTED
    assert meter.credit() == 1
    assert enter_token(StsMeterState(decoder_key=bytes(16)), token)[1].outcome is Outcome.REJECTED
