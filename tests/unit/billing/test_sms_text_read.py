"""The simulated SMS outbox reads back what `billing.sms_text` sends: GSM-7 and UCS-2 texts, long texts joined
from their concatenated parts (in any interleaving), meters' 8-bit frames left out, newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from billing.sms_text import SentPart, _text_parts, read_sent_texts
from gateway.ports import OutboundSms

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _parts(to: str, text: str, reference: int, at: datetime) -> list[SentPart]:
    return [
        SentPart(OutboundSms(to, body, has_udh=udh, data_coding=dcs), at + timedelta(milliseconds=i))
        for i, (body, udh, dcs) in enumerate(_text_parts(text, reference))
    ]


def test_texts_come_back_as_sent_newest_first() -> None:
    code = "Your sign-in code: 123456"
    euro = "Balance {low}: 5 € [pay] ~now~ | \\ ^"
    russian = "Ваш баланс исчерпан. " * 6  # UCS-2, several parts
    frame = SentPart(OutboundSms("37369000001", bytes(range(60)), data_coding=0x04), T0)
    long_ru = _parts("37360000003", russian, 7, T0 + timedelta(seconds=2))
    sent = [
        *_parts("37360000001", code, 1, T0),
        frame,
        long_ru[0],
        *_parts("37360000002", euro, 2, T0 + timedelta(seconds=3)),
        *long_ru[1:],
    ]
    texts = read_sent_texts(sent)
    assert [(t.to, t.text) for t in texts] == [
        ("37360000002", euro),
        ("37360000003", russian),
        ("37360000001", code),
    ]
    assert len(long_ru) > 1
    assert (texts[1].parts, texts[1].complete, texts[1].sent_at) == (len(long_ru), True, T0 + timedelta(seconds=2))
    assert (texts[2].parts, texts[2].complete) == (1, True)


def test_a_long_text_with_a_part_missing_is_shown_as_far_as_it_goes() -> None:
    text = "A" * 200  # GSM-7, two parts
    first, _second = _parts("37360000001", text, 9, T0)
    [shown] = read_sent_texts([SentPart(first.sms, first.at, lost=True)])
    assert (shown.text, shown.parts, shown.complete, shown.lost) == ("A" * 153, 1, False, True)


def test_a_reference_used_again_later_is_another_text() -> None:
    a = _parts("37360000001", "B" * 200, 5, T0)
    b = _parts("37360000001", "C" * 200, 5, T0 + timedelta(minutes=1))
    assert [t.text for t in read_sent_texts([*a, *b])] == ["C" * 200, "B" * 200]
