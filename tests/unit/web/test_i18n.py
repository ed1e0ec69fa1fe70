"""Every interface string is in the gettext catalogs, translated into every shipped language (Romanian,
Russian, Azerbaijani, Spanish) with the same placeholders; so is every notice text.
The language comes from the profile, the switcher's cookie or Accept-Language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from web import i18n

ROOT = Path(__file__).parents[3]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def _source_messages() -> set[str | tuple[str, ...]]:
    with (ROOT / "web" / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: set[str | tuple[str, ...]] = set()
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


TRANSLATED = [code for code in i18n.LANGUAGES if code != "en"]


def test_the_shipped_languages() -> None:
    assert TRANSLATED == ["ro", "ru", "az", "es"]
    for code in TRANSLATED:
        assert (ROOT / "web" / "locale" / code / "LC_MESSAGES" / "messages.po").exists(), code


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated(language: str) -> None:
    with (ROOT / "web" / "locale" / language / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale=language)
    translated = {}
    for message in catalog:
        if message.id:
            key = message.id if isinstance(message.id, str) else tuple(message.id)
            translated[key] = message.string
            assert not message.fuzzy, key
    wanted = _source_messages()
    assert len(wanted) > 200
    missing = sorted(str(m) for m in wanted if not translated.get(m))
    assert missing == []
    for key, string in translated.items():
        singular = key if isinstance(key, str) else key[0]
        strings = [string] if isinstance(string, str) else list(string)
        for s in strings:
            assert set(PLACEHOLDER.findall(s)) == set(PLACEHOLDER.findall(singular)), (key, s)


def test_catalogs_load_and_translate() -> None:
    with i18n.language("ro"):
        assert i18n.gettext("Sign out") == "Ieșire"
        assert i18n.ngettext("%(num)d day", "%(num)d days", 5) == "%(num)d zile"
    with i18n.language("ru"):
        assert i18n.gettext("Wrong user name or password.") == "Неверное имя пользователя или пароль."
        assert i18n.gettext("Send this relay command to meter %(code)s?", code="123") == (
            "Отправить эту команду реле на счётчик 123?"
        )
        assert i18n.ngettext("%(num)d subscriber", "%(num)d subscribers", 22) == "%(num)d абонента"
    with i18n.language("az"):
        assert i18n.gettext("Sign out") == "Çıxış"
        assert i18n.ngettext("%(num)d subscriber", "%(num)d subscribers", 22) == "%(num)d abunəçi"
    with i18n.language("es"):
        assert i18n.gettext("Send this relay command to meter %(code)s?", code="123") == (
            "¿Enviar este comando de relé al contador 123?"
        )
        assert i18n.ngettext("%(num)d day", "%(num)d days", 1) == "%(num)d día"
    with i18n.language("en"):
        assert i18n.gettext("Sign out") == "Sign out"


def test_language_negotiation() -> None:
    assert i18n.negotiate("ro-RO,ro;q=0.9,en;q=0.8", "en") == "ro"
    assert i18n.negotiate("de-DE,ru;q=0.7,en;q=0.5", "en") == "ru"
    assert i18n.negotiate("fr, de;q=0.5", "ro") == "ro"
    assert i18n.negotiate("", "en") == "en"
    assert i18n.negotiate("az-AZ,az;q=0.9", "en") == "az"
    assert i18n.negotiate("es-MX,es;q=0.9,en;q=0.5", "ro") == "es"
    assert i18n.negotiate("en;q=0.1, ru;q=0.9", "ro") == "ru"
    assert i18n.negotiate(";;;,q=x", "en") == "en"


def test_money_is_formatted_from_minor_units_per_language() -> None:
    with i18n.language("en"):
        assert i18n.money(123456, "USD") == "$1,234.56"
        assert i18n.money(-5, "USD") == "-$0.05"
    with i18n.language("ro"):
        assert i18n.money(123456, "MDL") == "1.234,56\xa0MDL"
    with i18n.language("ru"):
        assert i18n.money(100, "JPY").startswith("100")


def test_every_notice_text_is_in_every_shipped_language() -> None:
    from billing.rules.notices import NoticeKind, languages, notice_text

    assert set(languages()) == set(i18n.LANGUAGES)
    for code in i18n.LANGUAGES:
        for kind in NoticeKind:
            subject, body = notice_text(kind, code, utility="U", code="640100100010001", amount="1.00")
            assert subject, (code, kind)
            assert "640100100010001" in body, (code, kind)
            if code != "en":
                assert (subject, body) != notice_text(kind, "en", utility="U", code="640100100010001", amount="1.00")
