"""Subscriber self-service on the short number: the keywords a subscriber's phone may send, how a text is
read, what the answer says, and the scratch-card voucher code (docs/self-service.md). Pure: no I/O, no clock.

A keyword is matched case-insensitively, without accents (ÖDƏ, ODE and öde are one word), in any shipped
language. The answer is in the language the word belongs to; a word several languages share (TOKEN) is
answered in the subscriber's own language.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from billing.rules.money import Money


class Keyword(enum.StrEnum):
    BAL = "bal"
    DEBT = "debt"
    PAY = "pay"
    TOKEN = "token"
    LAST = "last"
    HELP = "help"


# the words of each language, as folded (upper case, no accents; Ə as E): the first word is the one HELP names
KEYWORDS: Mapping[str, Mapping[Keyword, tuple[str, ...]]] = {
    "en": {
        Keyword.BAL: ("BAL", "BALANCE"),
        Keyword.DEBT: ("DEBT",),
        Keyword.PAY: ("PAY",),
        Keyword.TOKEN: ("TOKEN",),
        Keyword.LAST: ("LAST",),
        Keyword.HELP: ("HELP", "?"),
    },
    "ro": {
        Keyword.BAL: ("SOLD",),
        Keyword.DEBT: ("DATORIE",),
        Keyword.PAY: ("PLATA", "PLATESTE"),
        Keyword.TOKEN: ("TOKEN", "COD"),
        Keyword.LAST: ("ULTIMA", "ULTIM"),
        Keyword.HELP: ("AJUTOR",),
    },
    "ru": {
        Keyword.BAL: ("БАЛ", "БАЛАНС"),
        Keyword.DEBT: ("ДОЛГ",),
        Keyword.PAY: ("ОПЛАТА", "ПЛАТЕЖ"),
        Keyword.TOKEN: ("ТОКЕН", "КОД"),
        Keyword.LAST: ("ПОСЛ", "ПОСЛЕДНИИ"),
        Keyword.HELP: ("ПОМОЩЬ", "СПРАВКА"),
    },
    "az": {
        Keyword.BAL: ("BALANS",),
        Keyword.DEBT: ("BORC",),
        Keyword.PAY: ("ODE",),
        Keyword.TOKEN: ("TOKEN",),
        Keyword.LAST: ("SON",),
        Keyword.HELP: ("KOMEK",),
    },
    "es": {
        Keyword.BAL: ("SALDO",),
        Keyword.DEBT: ("DEUDA",),
        Keyword.PAY: ("PAGO", "PAGAR"),
        Keyword.TOKEN: ("TOKEN", "CODIGO"),
        Keyword.LAST: ("ULTIMO", "ULTIMA"),
        Keyword.HELP: ("AYUDA",),
    },
}

_WORDS: dict[str, tuple[Keyword, tuple[str, ...]]] = {}
for _language, _table in KEYWORDS.items():
    for _keyword, _words in _table.items():
        for _word in _words:
            _known, _in = _WORDS.get(_word, (_keyword, ()))
            if _known is not _keyword:
                raise AssertionError(f"{_word} means two keywords")
            _WORDS[_word] = (_keyword, (*_in, _language))


def _fold(word: str) -> str:
    """Upper case, accents dropped (Й stays Й's base И), Ə read as E: the form keywords are compared in."""
    decomposed = unicodedata.normalize("NFKD", word.strip().upper().replace("Ə", "E"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True, slots=True)
class Request:
    keyword: Keyword
    argument: str  # what follows the keyword (the voucher code of PAY), spaces and dashes kept
    languages: tuple[str, ...]  # the languages the word belongs to


def parse_request(text: str) -> Request | None:
    """The keyword a text starts with, or None when it starts with no keyword."""
    words = text.split(None, 1)
    if not words:
        return None
    found = _WORDS.get(_fold(words[0]))
    if found is None:
        return None
    keyword, languages = found
    return Request(keyword, words[1].strip() if len(words) > 1 else "", languages)


def answer_language(request: Request, subscriber_language: str) -> str:
    if subscriber_language in request.languages:
        return subscriber_language
    return request.languages[0]


# --- voucher codes -------------------------------------------------------------------------------------

VOUCHER_DIGITS = 14  # 13 random digits and a Luhn check digit


def _luhn_digit(digits: str) -> str:
    """The Luhn check digit of `digits` (ISO/IEC 7812-1)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def voucher_code(random_digits: str) -> str:
    """A voucher code from 13 random digits (drawn by the caller): they and their check digit."""
    if len(random_digits) != VOUCHER_DIGITS - 1 or not random_digits.isdigit():
        raise ValueError("a voucher code is made of 13 random digits")
    return random_digits + _luhn_digit(random_digits)


def read_voucher_code(argument: str) -> str | None:
    """The code as typed (spaces and dashes allowed) when it has the right length and check digit, else None."""
    digits = "".join(c for c in argument if c not in " -")
    if len(digits) != VOUCHER_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits if _luhn_digit(digits[:-1]) == digits[-1] else None


def printed(code: str) -> str:
    """The code as printed on the card: groups of four."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


# --- answers -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Balance:
    balance: Money  # the account: wallet less debt
    meter_credit: Money | None  # as the meter last reported it; None: not reported yet
    reported_on: date | None = None


@dataclass(frozen=True, slots=True)
class Debt:
    owed: Money
    next_step: str | None = None  # reminder | final | disconnect
    next_on: date | None = None


@dataclass(frozen=True, slots=True)
class LastTopUp:
    amount: Money | None  # None: no top-up yet
    on: date | None = None
    state: str = ""  # queued | delivered | failed | held | reversed


@dataclass(frozen=True, slots=True)
class Token:
    token: str | None  # 20 digits; None: no token available
    amount: Money | None = None


@dataclass(frozen=True, slots=True)
class Paid:
    outcome: str  # credited | wrong_code | used | void | locked | no_code
    amount: Money | None = None
    state: str = ""  # the top-up's state when credited


@dataclass(frozen=True, slots=True)
class Help:
    pass


Answer = Balance | Debt | LastTopUp | Token | Paid | Help

_T: Mapping[str, Mapping[str, str]] = {
    "en": {
        "balance": "{utility}: account {code}: balance {balance}; meter credit {credit} on {on}.",
        "balance_unreported": "{utility}: account {code}: balance {balance}; the meter has not reported its credit.",
        "no_debt": "{utility}: account {code} has no debt.",
        "debt": "{utility}: account {code} owes {owed}. Next: {step} on {on}.",
        "debt_now": "{utility}: account {code} owes {owed}.",
        "last": "{utility}: last top-up {amount} on {on}: {state}.",
        "no_last": "{utility}: no top-up yet on account {code}.",
        "token": "{utility}: keypad token for {amount}: {token}",
        "no_token": "{utility}: no keypad token is available for account {code}.",
        "credited": "{utility}: voucher accepted, {amount} paid to account {code}: {state}.",
        "wrong_code": "{utility}: this voucher code is not valid.",
        "used": "{utility}: this voucher has been used already.",
        "void": "{utility}: this voucher was withdrawn by the utility and pays nothing; ask where you bought it.",
        "locked": "{utility}: too many wrong voucher codes; try again tomorrow.",
        "no_code": "{utility}: send PAY and the voucher code, e.g. PAY 1234 5678 9012 34.",
        "help": "{utility}: BAL balance, DEBT debt, PAY <code> voucher, TOKEN keypad token, LAST last top-up.",
        "reminder": "reminder",
        "final": "final notice",
        "disconnect": "disconnection",
        "queued": "on its way to the meter",
        "delivered": "on the meter",
        "failed": "not delivered, we retry",
        "held": "waits for a meter",
        "reversed": "reversed",
    },
    "ro": {
        "balance": "{utility}: contul {code}: sold {balance}; credit pe contor {credit} la {on}.",
        "balance_unreported": "{utility}: contul {code}: sold {balance}; contorul nu a raportat inca creditul.",
        "no_debt": "{utility}: contul {code} nu are datorii.",
        "debt": "{utility}: contul {code} datoreaza {owed}. Urmeaza: {step} la {on}.",
        "debt_now": "{utility}: contul {code} datoreaza {owed}.",
        "last": "{utility}: ultima reincarcare {amount} la {on}: {state}.",
        "no_last": "{utility}: contul {code} nu are inca nicio reincarcare.",
        "token": "{utility}: cod pentru tastatura, {amount}: {token}",
        "no_token": "{utility}: nu exista niciun cod pentru tastatura pentru contul {code}.",
        "credited": "{utility}: voucher acceptat, {amount} platit in contul {code}: {state}.",
        "wrong_code": "{utility}: acest cod de voucher nu este valid.",
        "used": "{utility}: acest voucher a fost deja folosit.",
        "void": "{utility}: acest voucher a fost anulat de furnizor si nu are valoare; intrebati unde l-ati cumparat.",
        "locked": "{utility}: prea multe coduri gresite; incercati din nou maine.",
        "no_code": "{utility}: trimiteti PLATA si codul voucherului, de ex. PLATA 1234 5678 9012 34.",
        "help": "{utility}: SOLD sold, DATORIE datorie, PLATA <cod> voucher, COD cod tastatura, "
        "ULTIMA ultima reincarcare.",
        "reminder": "memento",
        "final": "ultima notificare",
        "disconnect": "deconectare",
        "queued": "in drum spre contor",
        "delivered": "pe contor",
        "failed": "nelivrat, reincercam",
        "held": "asteapta un contor",
        "reversed": "anulat",
    },
    "ru": {
        "balance": "{utility}: счёт {code}: баланс {balance}; кредит на счётчике {credit} на {on}.",
        "balance_unreported": "{utility}: счёт {code}: баланс {balance}; счётчик ещё не сообщил кредит.",
        "no_debt": "{utility}: у счёта {code} нет долга.",
        "debt": "{utility}: долг по счёту {code}: {owed}. Далее: {step} {on}.",
        "debt_now": "{utility}: долг по счёту {code}: {owed}.",
        "last": "{utility}: последнее пополнение {amount} от {on}: {state}.",
        "no_last": "{utility}: по счёту {code} ещё нет пополнений.",
        "token": "{utility}: код для клавиатуры на {amount}: {token}",
        "no_token": "{utility}: для счёта {code} нет кода для клавиатуры.",
        "credited": "{utility}: ваучер принят, {amount} зачислено на счёт {code}: {state}.",
        "wrong_code": "{utility}: этот код ваучера недействителен.",
        "used": "{utility}: этот ваучер уже использован.",
        "void": "{utility}: этот ваучер аннулирован поставщиком и не действует; обратитесь туда, где его купили.",
        "locked": "{utility}: слишком много неверных кодов; попробуйте завтра.",
        "no_code": "{utility}: отправьте ОПЛАТА и код ваучера, напр. ОПЛАТА 1234 5678 9012 34.",
        "help": "{utility}: БАЛ баланс, ДОЛГ долг, ОПЛАТА <код> ваучер, КОД код клавиатуры, ПОСЛ последнее пополнение.",
        "reminder": "напоминание",
        "final": "последнее предупреждение",
        "disconnect": "отключение",
        "queued": "в пути к счётчику",
        "delivered": "на счётчике",
        "failed": "не доставлено, повторяем",
        "held": "ждёт счётчика",
        "reversed": "отменено",
    },
    "az": {
        "balance": "{utility}: {code} hesabı: balans {balance}; sayğacda kredit {credit}, {on}.",
        "balance_unreported": "{utility}: {code} hesabı: balans {balance}; sayğac hələ kreditini bildirməyib.",
        "no_debt": "{utility}: {code} hesabının borcu yoxdur.",
        "debt": "{utility}: {code} hesabının borcu {owed}. Növbəti: {step}, {on}.",
        "debt_now": "{utility}: {code} hesabının borcu {owed}.",
        "last": "{utility}: son balans artırma {amount}, {on}: {state}.",
        "no_last": "{utility}: {code} hesabında hələ balans artırma yoxdur.",
        "token": "{utility}: {amount} üçün klaviatura tokeni: {token}",
        "no_token": "{utility}: {code} hesabı üçün klaviatura tokeni yoxdur.",
        "credited": "{utility}: vauçer qəbul edildi, {amount} {code} hesabına ödənildi: {state}.",
        "wrong_code": "{utility}: bu vauçer kodu etibarsızdır.",
        "used": "{utility}: bu vauçer artıq istifadə edilib.",
        "void": "{utility}: bu vauçer təchizatçı tərəfindən ləğv edilib və etibarsızdır; aldığınız yerə müraciət edin.",
        "locked": "{utility}: çox sayda yanlış vauçer kodu; sabah yenidən cəhd edin.",
        "no_code": "{utility}: ODE və vauçer kodunu göndərin, məs. ODE 1234 5678 9012 34.",
        "help": "{utility}: BALANS balans, BORC borc, ODE <kod> vauçer, TOKEN klaviatura tokeni, "
        "SON son balans artırma.",
        "reminder": "xatırlatma",
        "final": "son xəbərdarlıq",
        "disconnect": "ayırma",
        "queued": "sayğaca doğru yoldadır",
        "delivered": "sayğacdadır",
        "failed": "çatdırılmadı, yenidən cəhd edirik",
        "held": "sayğac gözləyir",
        "reversed": "geri çevrildi",
    },
    "es": {
        "balance": "{utility}: cuenta {code}: saldo {balance}; crédito en el contador {credit} el {on}.",
        "balance_unreported": "{utility}: cuenta {code}: saldo {balance}; el contador aún no informó su crédito.",
        "no_debt": "{utility}: la cuenta {code} no tiene deuda.",
        "debt": "{utility}: la cuenta {code} debe {owed}. Siguiente paso: {step} el {on}.",
        "debt_now": "{utility}: la cuenta {code} debe {owed}.",
        "last": "{utility}: última recarga {amount} el {on}: {state}.",
        "no_last": "{utility}: la cuenta {code} aún no tiene recargas.",
        "token": "{utility}: token para el teclado por {amount}: {token}",
        "no_token": "{utility}: no hay token para el teclado para la cuenta {code}.",
        "credited": "{utility}: cupón aceptado, {amount} pagado en la cuenta {code}: {state}.",
        "wrong_code": "{utility}: este código de cupón no es válido.",
        "used": "{utility}: este cupón ya se ha usado.",
        "void": "{utility}: este cupón fue anulado por la compañía y no tiene valor; consulte donde lo compró.",
        "locked": "{utility}: demasiados códigos erróneos; inténtelo de nuevo mañana.",
        "no_code": "{utility}: envíe PAGO y el código del cupón, p. ej. PAGO 1234 5678 9012 34.",
        "help": "{utility}: SALDO saldo, DEUDA deuda, PAGO <código> cupón, TOKEN token del teclado, "
        "ULTIMO última recarga.",
        "reminder": "recordatorio",
        "final": "último aviso",
        "disconnect": "corte",
        "queued": "en camino al contador",
        "delivered": "en el contador",
        "failed": "no entregada, reintentamos",
        "held": "espera un contador",
        "reversed": "revertida",
    },
}


def languages() -> tuple[str, ...]:
    return tuple(_T)


def answer_text(answer: Answer, language: str, *, utility: str, code: str) -> str:
    """The answer's SMS text in `language` (English when the language is not shipped)."""
    t = _T.get(language, _T["en"])
    said: dict[str, object] = {"utility": utility, "code": code}
    match answer:
        case Balance(balance, credit, on):
            if credit is None:
                return t["balance_unreported"].format(**said, balance=balance.format())
            return t["balance"].format(**said, balance=balance.format(), credit=credit.format(), on=on)
        case Debt(owed, step, on):
            if not owed.minor:
                return t["no_debt"].format(**said)
            if step is None or on is None:
                return t["debt_now"].format(**said, owed=owed.format())
            return t["debt"].format(**said, owed=owed.format(), step=t[step], on=on.isoformat())
        case LastTopUp(amount, on, state):
            if amount is None:
                return t["no_last"].format(**said)
            return t["last"].format(**said, amount=amount.format(), on=on, state=t.get(state, state))
        case Token(token, amount):
            if token is None or amount is None:
                return t["no_token"].format(**said)
            return t["token"].format(**said, amount=amount.format(), token=" ".join(_groups(token)))
        case Paid(outcome, amount, state):
            if outcome == "credited" and amount is not None:
                return t["credited"].format(**said, amount=amount.format(), state=t.get(state, state))
            return t[outcome].format(**said)
        case Help():
            return t["help"].format(**said)
    raise AssertionError(answer)  # pragma: no cover


def _groups(token: str) -> list[str]:
    return [token[i : i + 4] for i in range(0, len(token), 4)]
