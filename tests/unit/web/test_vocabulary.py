"""Every code a person can see — a command's state and kind, the meter's answer and reason codes, why a relay
moved, who moved a command, alarm kinds and severities, why an SMS was refused, roles — is marked for
translation and translated into every shipped language; a command's state and a meter's refusal are also
said in words, with what to do next."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.pofile import read_po

import meter_protocol as mp
from gateway.states import CommandState
from tests.support.codes import shown_codes
from web import i18n, outcomes
from web.vocabulary import CODES

LOCALE = Path(__file__).parents[3] / "web" / "locale"


def _catalog(language: str) -> dict[str, str]:
    with (LOCALE / language / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale=language)
    return {m.id: m.string for m in catalog if isinstance(m.id, str) and m.id}


def test_every_code_is_marked_for_translation() -> None:
    marked = set(CODES)
    missing = {group: sorted(codes - marked) for group, codes in shown_codes().items() if codes - marked}
    assert missing == {}


@pytest.mark.parametrize("language", [code for code in i18n.LANGUAGES if code != "en"])
def test_every_code_has_a_translation(language: str) -> None:
    catalog = _catalog(language)
    missing = {group: sorted(c for c in codes if not catalog.get(c)) for group, codes in shown_codes().items()}
    assert {group: codes for group, codes in missing.items() if codes} == {}


@pytest.mark.parametrize("language", sorted(i18n.LANGUAGES))
def test_every_state_and_refusal_is_said_in_words_in_every_language(language: str) -> None:
    assert set(outcomes.STATE_WORDS) == {s.value for s in CommandState}
    assert set(outcomes.REASON_WORDS) >= {r.name.lower() for r in mp.ReasonCode}
    assert {s.value for s in CommandState if s.is_failure and s is not CommandState.CANCELLED} - {
        CommandState.REJECTED_METER.value
    } <= set(outcomes.ADVICE)
    if language == "en":
        return
    catalog = _catalog(language)
    words = [*outcomes.STATE_WORDS.values(), *outcomes.REASON_WORDS.values(), *outcomes.ADVICE.values()]
    assert [w for w in words if not catalog.get(w)] == []


def test_a_refused_relay_on_says_why_and_what_to_do() -> None:
    refused = {
        "id": 7,
        "kind": "relay_on",
        "state": "rejected_meter",
        "final": True,
        "failed": True,
        "reason": "no_credit",
        "meter_credit_minor": 0,
        "currency": "USD",
    }
    with i18n.language("en"):
        said = outcomes.describe(refused)
    assert (said["state"], said["final"], said["failed"]) == ("rejected_meter", True, True)
    assert said["state_words"] == "rejected meter"
    assert said["words"] == "Refused by the meter."
    assert said["reason"] == "no credit: balance $0.00"
    assert "Top up the account" in said["advice"]
    assert "emergency credit" in said["advice"]
    with i18n.language("ro"):
        said = outcomes.describe(refused)
    assert said["state_words"] == "respinsă de contor"
    assert said["reason"].startswith("fără credit: sold ")
    with i18n.language("ru"):
        said = outcomes.describe({**refused, "state": "1:1", "failed": False, "reason": "ok"})
    assert (said["state_words"], said["words"], said["reason"], said["advice"]) == (
        "1:1",
        "Выполнена счётчиком.",
        "",
        "",
    )
