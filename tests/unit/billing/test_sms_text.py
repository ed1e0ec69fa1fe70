from billing.sms_text import _text_parts, gsm7_septets


def test_short_gsm7_text_is_one_unpacked_part() -> None:
    ((body, has_udh, dcs),) = _text_parts("Pay 12.50 € now @ home", 7)
    assert not has_udh
    assert dcs == 0x00
    assert body == b"".join(gsm7_septets("Pay 12.50 € now @ home"))
    assert b"\x1b\x65" in body
    assert body.count(0x00) == 1


def test_long_gsm7_text_is_concatenated_153_septets_a_part() -> None:
    parts = _text_parts("a" * 300, 0x1FF)
    assert [len(b) - 6 for b, _, _ in parts] == [153, 147]
    assert all(h and d == 0 for _, h, d in parts)
    assert parts[0][0][:6] == bytes([5, 0, 3, 0xFF, 2, 1])
    assert parts[1][0][:6] == bytes([5, 0, 3, 0xFF, 2, 2])


def test_escapes_are_never_split() -> None:
    parts = _text_parts("a" * 152 + "€" + "b" * 10, 1)
    assert len(parts[0][0]) - 6 == 152
    assert parts[1][0][6:8] == b"\x1b\x65"


def test_ucs2_for_cyrillic_67_characters_a_part() -> None:
    ((body, has_udh, dcs),) = _text_parts("Оплатите", 1)
    assert dcs == 0x08
    assert not has_udh
    assert body == "Оплатите".encode("utf-16-be")
    parts = _text_parts("ж" * 100 + "😀", 3)
    assert [(len(b) - 6) // 2 for b, _, _ in parts] == [67, 35]
    assert parts[1][0][6:].decode("utf-16-be").endswith("😀")
