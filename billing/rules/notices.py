"""Notice texts in the subscriber's language, and how an SMS text is encoded: GSM-7 when every character
is in the GSM 03.38 default alphabet (or its extension table), else UCS-2 (3GPP TS 23.038). Pure."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"
_BASIC = frozenset(GSM7_BASIC)
_EXT = frozenset(GSM7_EXTENSION)


class SmsEncoding(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class SmsSizing:
    encoding: SmsEncoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int


def sms_sizing(text: str) -> SmsSizing:
    """Encoding and number of SMS parts: 160/153 septets for GSM-7, 70/67 characters for UCS-2."""
    if all(c in _BASIC or c in _EXT for c in text):
        units = sum(2 if c in _EXT else 1 for c in text)
        single, multi, encoding = 160, 153, SmsEncoding.GSM7
    else:
        units = len(text.encode("utf-16-be")) // 2
        single, multi, encoding = 70, 67, SmsEncoding.UCS2
    parts = 1 if units <= single else -(-units // multi)
    return SmsSizing(encoding, units, parts)


class NoticeKind(enum.StrEnum):
    REMINDER = "reminder"
    FINAL = "final"
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    LOW_CREDIT = "low_credit"
    PAYMENT = "payment"  # a top-up credited (billing.payment_notice)


_TEXTS: Mapping[str, Mapping[NoticeKind, tuple[str, str]]] = {
    "en": {
        NoticeKind.REMINDER: (
            "Payment reminder",
            "{utility}: account {code} owes {amount}. Please pay to avoid a penalty.",
        ),
        NoticeKind.FINAL: (
            "Final notice",
            "{utility}: FINAL NOTICE. Account {code} owes {amount}. Pay now or supply will be disconnected.",
        ),
        NoticeKind.DISCONNECT: (
            "Supply disconnected",
            "{utility}: supply to account {code} is disconnected for a debt of {amount}. It returns once paid.",
        ),
        NoticeKind.RECONNECT: (
            "Supply reconnected",
            "{utility}: thank you. Account {code} is clear and supply is reconnected.",
        ),
        NoticeKind.LOW_CREDIT: (
            "Low credit",
            "{utility}: meter credit for account {code} is low ({amount}). Top up soon.",
        ),
        NoticeKind.PAYMENT: (
            "Payment received",
            "{utility}: payment of {amount} received for account {code}. Thank you.",
        ),
    },
    "ro": {
        NoticeKind.REMINDER: (
            "Memento de plata",
            "{utility}: contul {code} are o datorie de {amount}. Va rugam sa achitati pentru a evita penalitatea.",
        ),
        NoticeKind.FINAL: (
            "Ultima notificare",
            "{utility}: ULTIMA NOTIFICARE. Contul {code} datoreaza {amount}. "
            "Achitati acum sau alimentarea va fi deconectata.",
        ),
        NoticeKind.DISCONNECT: (
            "Alimentare deconectata",
            "{utility}: alimentarea contului {code} este deconectata pentru datoria de {amount}.",
        ),
        NoticeKind.RECONNECT: (
            "Alimentare reconectata",
            "{utility}: multumim. Contul {code} este achitat si alimentarea reconectata.",
        ),
        NoticeKind.LOW_CREDIT: (
            "Credit redus",
            "{utility}: creditul contorului pentru contul {code} este redus ({amount}). Reincarcati.",
        ),
        NoticeKind.PAYMENT: (
            "Plata primita",
            "{utility}: plata de {amount} pentru contul {code} a fost primita. Multumim.",
        ),
    },
    "ru": {
        NoticeKind.REMINDER: (
            "Напоминание об оплате",
            "{utility}: по счёту {code} долг {amount}. Оплатите, чтобы избежать пени.",
        ),
        NoticeKind.FINAL: (
            "Последнее предупреждение",
            "{utility}: ПОСЛЕДНЕЕ ПРЕДУПРЕЖДЕНИЕ. Долг по счёту {code}: {amount}. "
            "Оплатите, иначе подача будет отключена.",
        ),
        NoticeKind.DISCONNECT: (
            "Подача отключена",
            "{utility}: подача по счёту {code} отключена за долг {amount}. Будет восстановлена после оплаты.",
        ),
        NoticeKind.RECONNECT: (
            "Подача восстановлена",
            "{utility}: спасибо. Счёт {code} оплачен, подача восстановлена.",
        ),
        NoticeKind.LOW_CREDIT: (
            "Мало кредита",
            "{utility}: на счётчике по счёту {code} мало кредита ({amount}). Пополните.",
        ),
        NoticeKind.PAYMENT: (
            "Платёж получен",
            "{utility}: платёж {amount} по счёту {code} получен. Спасибо.",
        ),
    },
    "az": {
        NoticeKind.REMINDER: (
            "Ödəniş xatırlatması",
            "{utility}: {code} hesabının {amount} borcu var. Cərimədən qaçmaq üçün zəhmət olmasa ödəyin.",
        ),
        NoticeKind.FINAL: (
            "Son xəbərdarlıq",
            "{utility}: SON XƏBƏRDARLIQ. {code} hesabının borcu {amount}. İndi ödəyin, əks halda təchizat ayrılacaq.",
        ),
        NoticeKind.DISCONNECT: (
            "Təchizat ayrıldı",
            "{utility}: {code} hesabının təchizatı {amount} borca görə ayrıldı. Ödənişdən sonra bərpa olunacaq.",
        ),
        NoticeKind.RECONNECT: (
            "Təchizat bərpa olundu",
            "{utility}: təşəkkür edirik. {code} hesabının borcu yoxdur və təchizat bərpa olundu.",
        ),
        NoticeKind.LOW_CREDIT: (
            "Az kredit",
            "{utility}: {code} hesabının sayğacında kredit azdır ({amount}). Tezliklə balansı artırın.",
        ),
        NoticeKind.PAYMENT: (
            "Ödəniş alındı",
            "{utility}: {code} hesabı üçün {amount} ödəniş alındı. Təşəkkür edirik.",
        ),
    },
    "es": {
        NoticeKind.REMINDER: (
            "Recordatorio de pago",
            "{utility}: la cuenta {code} debe {amount}. Pague para evitar un recargo.",
        ),
        NoticeKind.FINAL: (
            "Último aviso",
            "{utility}: ÚLTIMO AVISO. La cuenta {code} debe {amount}. Pague ya o se cortará el suministro.",
        ),
        NoticeKind.DISCONNECT: (
            "Suministro cortado",
            "{utility}: el suministro de la cuenta {code} está cortado por una deuda de {amount}. "
            "Vuelve una vez pagada.",
        ),
        NoticeKind.RECONNECT: (
            "Suministro restablecido",
            "{utility}: gracias. La cuenta {code} está al día y el suministro restablecido.",
        ),
        NoticeKind.LOW_CREDIT: (
            "Crédito bajo",
            "{utility}: el crédito del contador de la cuenta {code} es bajo ({amount}). Recargue pronto.",
        ),
        NoticeKind.PAYMENT: (
            "Pago recibido",
            "{utility}: pago de {amount} recibido para la cuenta {code}. Gracias.",
        ),
    },
}


def notice_text(kind: NoticeKind, language: str, *, utility: str, code: str, amount: str) -> tuple[str, str]:
    """(subject, body) in `language`, falling back to English."""
    texts = _TEXTS.get(language, _TEXTS["en"])
    subject, body = texts[kind]
    return subject, body.format(utility=utility, code=code, amount=amount)


def languages() -> tuple[str, ...]:
    return tuple(_TEXTS)
