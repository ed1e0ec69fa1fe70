"""What an invoice PDF says, in every shipped language: its labels and the descriptions of its lines
(billing.rules.invoice writes them in English; they are the keys here). Pure."""

from __future__ import annotations

from collections.abc import Mapping

LABELS = (
    "Invoice",
    "Tax invoice",
    "Issued",
    "Period",
    "From",
    "To",
    "Account",
    "Tax id",
    "Description",
    "Quantity",
    "Amount",
    "VAT included",
    "Debt at the start of the period",
    "Payments received",
    "Credit sent to the meter",
    "Energy consumed (value at tariff)",
    "Debt recovered from payments",
    "Emergency credit",
    "Penalties",
    "Fixed charges",
    "Adjustments",
    "Refunds and reversals",
    "Debt at the end of the period",
    "Energy imported",
    "Energy exported",
    "Surplus from the previous period",
    "Net energy billed (value at tariff)",
    "Surplus carried to the next period",
)

_TEXTS: Mapping[str, tuple[str, ...]] = {
    "ro": (
        "Factura", "Factura fiscală", "Emisă", "Perioada", "De la", "Către", "Cont", "Cod fiscal", "Descriere",
        "Cantitate", "Suma", "TVA inclus", "Datoria la începutul perioadei", "Plăți primite",
        "Credit trimis contorului", "Energie consumată (valoare după tarif)", "Datorie recuperată din plăți",
        "Credit de urgență", "Penalități", "Taxe fixe", "Ajustări", "Rambursări și anulări",
        "Datoria la sfârșitul perioadei",
        "Energie importată", "Energie exportată", "Surplus din perioada anterioară",
        "Energie netă facturată (valoare după tarif)", "Surplus reportat în perioada următoare",
    ),
    "ru": (
        "Счёт", "Счёт-фактура", "Выставлен", "Период", "От", "Кому", "Счёт абонента", "ИНН", "Описание",
        "Количество", "Сумма", "В т. ч. НДС", "Долг на начало периода", "Получено платежей",
        "Кредит, отправленный на счётчик", "Потреблённая энергия (по тарифу)", "Долг, погашенный из платежей",
        "Аварийный кредит", "Пени", "Фиксированные платежи", "Корректировки", "Возвраты и отмены",
        "Долг на конец периода",
        "Принятая энергия", "Отданная энергия", "Избыток с прошлого периода",
        "Нетто-энергия к оплате (по тарифу)", "Избыток, перенесённый на следующий период",
    ),
    "az": (
        "Hesab-faktura", "Vergi hesab-fakturası", "Verilib", "Dövr", "Kimdən", "Kimə", "Hesab", "VÖEN", "Təsvir",
        "Miqdar", "Məbləğ", "ƏDV daxil", "Dövrün əvvəlinə borc", "Alınmış ödənişlər", "Sayğaca göndərilən kredit",
        "İstehlak edilmiş enerji (tarif üzrə dəyər)", "Ödənişlərdən tutulan borc", "Təcili kredit", "Cərimələr",
        "Sabit haqlar", "Düzəlişlər", "Geri qaytarmalar və geri çevirmələr", "Dövrün sonuna borc",
        "İdxal edilmiş enerji", "İxrac edilmiş enerji", "Əvvəlki dövrdən artıq",
        "Hesablanan xalis enerji (tarif üzrə dəyər)", "Növbəti dövrə keçirilən artıq",
    ),
    "es": (
        "Factura", "Factura fiscal", "Emitida", "Periodo", "De", "Para", "Cuenta", "NIF", "Descripción",
        "Cantidad", "Importe", "IVA incluido", "Deuda al inicio del periodo", "Pagos recibidos",
        "Crédito enviado al contador", "Energía consumida (valor según tarifa)", "Deuda recuperada de los pagos",
        "Crédito de emergencia", "Recargos", "Cargos fijos", "Ajustes", "Reembolsos y reversiones",
        "Deuda al final del periodo",
        "Energía importada", "Energía exportada", "Excedente del periodo anterior",
        "Energía neta facturada (valor según tarifa)", "Excedente pasado al periodo siguiente",
    ),
}  # fmt: skip
_BY_LANGUAGE = {language: dict(zip(LABELS, texts, strict=True)) for language, texts in _TEXTS.items()}


def languages() -> tuple[str, ...]:
    return ("en", *_TEXTS)


def say(text: str, language: str) -> str:
    """`text` (one of LABELS) in `language`; English for any other language or text."""
    return _BY_LANGUAGE.get(language, {}).get(text, text)
