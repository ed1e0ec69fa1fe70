"""The codes a person can see in the console and the portal, walked from the enums and tables that make them
(for the translation tests and the browser's check that no raw code is shown)."""

from __future__ import annotations

import meter_protocol as mp
from gateway.inbound_rows import alarm_kind
from gateway.states import CommandState, Source
from web.permissions import ROLES

# Codes written by literal in the gateway and billing (alarm rows, wrong SMS rows), not by an enum.
WRONG_SMS_REASONS = (
    "unknown_sender",
    "bad_tag",
    "replay",
    "malformed",
    "wrong_number",
    "not_a_report",
    "unknown_key",
    "wrong_direction",
    "wrong_meter",
    "unmatched_ack",
)
OTHER_ALARM_KINDS = ("command_failed", "transformer_loss", "topup_failed")
SEVERITIES = ("info", "warning", "critical")


def shown_codes() -> dict[str, set[str]]:
    return {
        "command states": {s.value for s in CommandState if s.is_failure},
        "command kinds": {t.name.lower() for t in mp.MessageType if t.direction is mp.Direction.DOWNLINK},
        "answers": {r.name.lower() for r in mp.AckResult if r is not mp.AckResult.REJECTED},
        "reason codes": {r.name.lower() for r in mp.ReasonCode},
        "relay reasons": {r.name.lower() for r in mp.RelayReason},
        "sources": {s.value for s in Source},
        "alarm kinds": {alarm_kind(e) for e in mp.EventKind} | set(OTHER_ALARM_KINDS),
        "severities": set(SEVERITIES),
        "wrong SMS": set(WRONG_SMS_REASONS),
        "roles": set(ROLES),
    }
