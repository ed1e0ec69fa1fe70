"""A command's outcome in words, for the person who sent it: what its state means, why it failed when it did
(the meter's reason code, or the network's), and what to do next. Display only: the states and reasons
are the gateway's (`gateway.states.CommandState`) and the protocol's (`meter_protocol.ReasonCode`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from web.i18n import N_, gettext, money
from web.render import translate_code

# What each state means, said in full (the badge shows the code operators know).
STATE_WORDS: Mapping[str, str] = {
    "0:0": N_("Sending: handed to the gateway, not yet accepted by the mobile operator."),
    "0:1": N_("Accepted by the mobile operator; on its way to the meter."),
    "1:0": N_("Received by the meter; waiting for the meter to process it."),
    "1:1": N_("Processed by the meter."),
    "rejected_smsc": N_("Refused by the mobile operator."),
    "undeliverable": N_("The mobile network could not deliver it to the meter."),
    "expired": N_("It expired before the meter could receive it."),
    "rejected_meter": N_("Refused by the meter."),
    "timed_out": N_("The meter did not answer."),
    "failed": N_("It could not be handed to the mobile operator."),
    "cancelled": N_("Cancelled: it was not sent."),
}

# Why the meter refused (the acknowledgement's reason code, `meter_protocol.ReasonCode`, in lower case).
REASON_WORDS: Mapping[str, str] = {
    "none": N_("no reason given"),
    "ok": N_("applied"),
    "duplicate": N_("applied before"),
    "malformed": N_("the meter could not read the command"),
    "unknown_type": N_("the meter does not know this command"),
    "counter_too_old": N_("the command was too old for the meter's replay window"),
    "transfer_too_old": N_("the credit's transfer id is older than the meter accepts"),
    "tariff_outdated": N_("the meter already has this tariff version or a newer one"),
    "key_unwrap_failed": N_("the meter could not unwrap the new key"),
    "key_id_in_use": N_("the meter already uses this key id"),
    "value_out_of_range": N_("a value is outside what the meter accepts"),
    "credit_overflow": N_("the credit would exceed the meter's maximum"),
    "no_credit": N_("no credit"),
    "unsupported": N_("the meter does not support this"),
    "tamper_latched": N_("a tamper is latched on the meter"),
}

# What to do next, by reason code, or by final state when the meter gave no reason.
ADVICE: Mapping[str, str] = {
    "no_credit": N_(
        "Top up the account (cash or online) or grant emergency credit, then send relay on again: the credit "
        "reaches the meter first."
    ),
    "tamper_latched": N_("Inspect the meter, send Clear tamper, then send relay on again."),
    "counter_too_old": N_("Send the command again: a new command gets a new counter."),
    "tariff_outdated": N_("Nothing to do: the meter runs this tariff version or a newer one."),
    "credit_overflow": N_("Let the subscriber use some credit before the next top-up."),
    "unsupported": N_("Check the meter's profile (binary or XML) on the meter card."),
    "rejected_smsc": N_("Check the meter's SIM number and the SMSC account, then send it again."),
    "undeliverable": N_("Check that the meter's SIM is active and has signal, then send it again."),
    "expired": N_("Check that the meter's SIM is active and has signal, then send it again."),
    "timed_out": N_("Check the meter's signal and power, then send it again."),
    "failed": N_("The SMSC could not be reached; the communication page shows the link. Send it again later."),
}


def reason_words(reason: str | None) -> str:
    """The meter's reason code in the reader's language; an unknown code is shown as it is."""
    if not reason:
        return ""
    words = REASON_WORDS.get(reason)
    return gettext(words) if words else reason


def describe(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON the console's live box shows: {id, kind, kind_words, state, state_words (the badge), final,
    failed, words (what the state means), reason, advice}.
    `outcome` is `web.queries.outcomes.command_outcome`'s."""
    state = str(outcome["state"])
    reason = outcome.get("reason") if state == "rejected_meter" else None  # the meter's code; else the state says it
    words = STATE_WORDS.get(state)
    reason_text = reason_words(reason)
    if reason == "no_credit":
        credit = outcome.get("meter_credit_minor")
        currency = str(outcome.get("currency") or "USD")
        reason_text = gettext(
            "no credit: balance %(balance)s", balance=money(credit if credit is not None else 0, currency)
        )
    advice = (ADVICE.get(reason or "") or ADVICE.get(state)) if outcome.get("failed") else None
    return {
        "id": outcome["id"],
        "kind": outcome["kind"],
        "kind_words": translate_code(outcome["kind"]),
        "state": state,
        "state_words": translate_code(state),
        "final": bool(outcome["final"]),
        "failed": bool(outcome.get("failed")),
        "words": gettext(words) if words else state,
        "reason": reason_text,
        "advice": gettext(advice) if advice else "",
    }
