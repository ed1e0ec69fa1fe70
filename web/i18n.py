"""Interface languages through gettext catalogs (Babel): English, Romanian, Russian, Azerbaijani, Spanish.

The `.po` files under web/locale are the sources; they are compiled in memory when the application is
built (a few milliseconds), so a catalog can never be stale. The language of a request: the signed-in
user's profile, else the language cookie (the switcher), else the browser's Accept-Language, else the
configured default. Strings in Python use `_()` at request time, or `N_()` to mark them for later.
"""

from __future__ import annotations

import contextvars
import gettext as _gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, get_currency_precision
from babel.support import Translations

LANGUAGES: dict[str, str] = {"en": "English", "ro": "Română", "ru": "Русский", "az": "Azərbaycanca", "es": "Español"}
LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "messages"

_catalogs: dict[str, _gettext.NullTranslations] = {}
_current: contextvars.ContextVar[str] = contextvars.ContextVar("language", default="en")


def load_catalogs() -> dict[str, _gettext.NullTranslations]:
    """Compile every language's .po into a gettext catalog (once per process)."""
    if not _catalogs:
        for language in LANGUAGES:
            po = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
            if language == "en" or not po.exists():
                _catalogs[language] = _gettext.NullTranslations()
                continue
            with po.open("rb") as fh:
                catalog = read_po(fh, locale=language)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            _catalogs[language] = Translations(fp=buffer, domain=DOMAIN)
    return _catalogs


def current_language() -> str:
    return _current.get()


@contextmanager
def language(code: str) -> Iterator[None]:
    token = _current.set(code if code in LANGUAGES else "en")
    try:
        yield
    finally:
        _current.reset(token)


def set_language(code: str) -> None:
    _current.set(code if code in LANGUAGES else "en")


def gettext(message: str, **variables: object) -> str:
    translated = load_catalogs()[_current.get()].gettext(message)
    return translated % variables if variables else translated


def ngettext(singular: str, plural: str, n: int) -> str:
    return load_catalogs()[_current.get()].ngettext(singular, plural, n)


_ = gettext


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark a string for extraction; it is translated later, where it is shown."""
    return message


def negotiate(accept_language: str, default: str) -> str:
    """The best of our languages for an Accept-Language header."""
    wanted: list[tuple[float, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _sep, params = piece.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        wanted.append((quality - i * 1e-6, tag.strip()))
    for _quality, tag in sorted(wanted, reverse=True):
        try:
            code = Locale.parse(tag.replace("-", "_")).language
        except (ValueError, UnknownLocaleError):
            continue
        if code in LANGUAGES:
            return code
    return default


def money(amount_minor: int | None, currency: str) -> str:
    """Integer minor units → the current language's currency format (no float on the way)."""
    if amount_minor is None:
        return "—"
    digits = get_currency_precision(currency)
    value = Decimal(amount_minor).scaleb(-digits)
    return format_currency(value, currency, locale=_current.get())


def number(value: int | float | Decimal | None) -> str:
    return "—" if value is None else format_decimal(value, locale=_current.get())


def when(value: datetime | None) -> str:
    """A UTC time in the current language, to the second, with 'UTC' said (storage and display are UTC)."""
    if value is None:
        return "—"
    return format_datetime(value, "yyyy-MM-dd HH:mm:ss", locale=_current.get()) + " UTC"
