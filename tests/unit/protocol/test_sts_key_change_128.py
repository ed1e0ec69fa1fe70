"""The four-token key change for 128-bit (MISTY1, STS6) decoder keys against the published compliance tokens
(CTSA05 of STS 531-1-0-04: DKGA04 keys from the 160-bit VUDK, current TI 01 → new TI 02), both ways, and at the
reference meter: the set moves it to the new key and supply group, a section out of order is refused."""

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
    Outcome,
    StsError,
    StsMeterState,
    combine_key_change,
    decode_token,
    decoder_key_dkga04,
    encode_credit_token,
    encode_key_change_set,
    encode_key_change_tokens,
    enter_token,
    read_key_change,
    token_identifier,
)

VUDK_160 = bytes.fromhex("abababababababab949494949494949401234567")
METER = DecoderKeyParameters("600727", "00000000000", 2, "123457", "01", 1)
OTHER_PAN = replace(METER, iin="000001", drn="00000000008")  # PAN 000001000000000082


def _key(
    parameters: DecoderKeyParameters, *, ti: str = "01", krn: int = 1, base_date: datetime = BASE_DATE_1993
) -> bytes:
    return decoder_key_dkga04(VUDK_160, replace(parameters, tariff_index=ti, key_revision=krn), base_date=base_date)


def _change(new_key: bytes, *, krn: int = 1, rollover: bool = False) -> KeyChange:
    return KeyChange(new_key, key_revision=krn, key_type=2, tariff_index=2, key_expiry=255, rollover=rollover,
                     supply_group_code=123457)  # fmt: skip


def test_the_published_four_token_set() -> None:
    current, new = _key(METER), _key(METER, ti="02")
    tokens = encode_key_change_set(current, _change(new))
    assert tokens == ("34812744915211133004", "46903925208523674737", "71464563847088610152", "67904239402617643990")
    sections = [read_key_change(decode_token(t, current)) for t in tokens]
    assert [s.section for s in sections] == [1, 2, 3, 4]
    assert combine_key_change(*sections) == _change(new)


@pytest.mark.parametrize(
    ("parameters", "new_key", "krn", "rollover", "first", "second"),
    [
        (METER, _key(METER, ti="02", krn=4, base_date=BASE_DATE_2014), 4, True,
         "56493341861242437581", "51757380361191578258"),  # step 2: to KRN 4 on base date 2014
        (OTHER_PAN, _key(OTHER_PAN, ti="02"), 1, False, "29594465524699505864", "09506536067814156547"),  # step 3
    ],
)  # fmt: skip
def test_the_published_first_and_second_sections(
    parameters: DecoderKeyParameters, new_key: bytes, krn: int, rollover: bool, first: str, second: str
) -> None:
    tokens = encode_key_change_set(_key(parameters), _change(new_key, krn=krn, rollover=rollover))
    assert tokens[:2] == (first, second)


def test_sizes_and_ranges_are_checked() -> None:
    with pytest.raises(StsError):
        encode_key_change_set(_key(METER), _change(bytes(8)))
    with pytest.raises(StsError):
        encode_key_change_set(_key(METER), replace(_change(bytes(16)), supply_group_code=1 << 24))
    with pytest.raises(StsError):
        encode_key_change_tokens(_key(METER), _change(bytes(16)))
    one, two, three, four = (read_key_change(decode_token(t, _key(METER)))
                             for t in encode_key_change_set(_key(METER), _change(_key(METER, ti="02"))))  # fmt: skip
    with pytest.raises(StsError):
        combine_key_change(one, two, four, three)
    with pytest.raises(StsError):
        combine_key_change(one, two, three)


def test_the_reference_sts6_meter_takes_the_set_and_then_the_new_keys_tokens() -> None:
    current, new = _key(METER), _key(METER, ti="02")
    meter = StsMeterState(decoder_key=current, supply_group_code=123457)
    tokens = encode_key_change_set(current, replace(_change(new), supply_group_code=654321))
    for token in tokens[:3]:
        meter, shown = enter_token(meter, token)
        assert shown.outcome is Outcome.KEY_SECTION_HELD
        assert meter.decoder_key == current
    meter, shown = enter_token(meter, tokens[3])
    assert shown.outcome is Outcome.KEY_CHANGED
    assert (meter.decoder_key, meter.tariff_index, meter.supply_group_code) == (new, 2, 654321)
    tid = token_identifier(datetime(2004, 3, 1, 13, 0, tzinfo=UTC))
    assert enter_token(meter, encode_credit_token(CreditKind.ELECTRICITY, 1, tid, 5, current))[1].outcome is (
        Outcome.REJECTED
    )
    meter, shown = enter_token(meter, encode_credit_token(CreditKind.ELECTRICITY, 1, tid, 5, new))
    assert (shown.outcome, meter.credit()) == (Outcome.ACCEPTED, 1)


def test_a_section_out_of_order_drops_what_was_held() -> None:
    current = _key(METER)
    first, second, third, fourth = encode_key_change_set(current, _change(_key(METER, ti="02")))
    meter = StsMeterState(decoder_key=current)
    meter, _ = enter_token(meter, first)
    meter, shown = enter_token(meter, third)  # the second is missing
    assert (shown.outcome, meter.pending_sections) == (Outcome.REJECTED, ())
    for token in (second, fourth):
        meter, shown = enter_token(meter, token)
        assert shown.outcome is Outcome.REJECTED
    assert meter.decoder_key == current
