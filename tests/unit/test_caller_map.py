"""The caller map (scripts/caller_map.py): every public function of billing/ and gateway/ is referred to from
outside tests/ — by a door (console, API, CLI), a scheduled job, the composition root, or another use case.
A function whose only callers are tests is not a feature: a new one fails here until it has a door, or is made
private, or is named below with the reason it has none."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

# Internal helpers and codecs that need no door of their own, each with why.
INTERNAL = {
    "gateway.pdu_gsm.encode_deliver": "the modem's SMS-DELIVER codec, used by the test modem peer (the network side)",
    "gateway.pdu_gsm.encode_status_report": "the modem's status-report codec, used by the test modem peer",
    "billing.losses.transformer_balances_of": "a transformer's periods; the console reads them through web/queries",
}
# Rules that exist without the use case that would apply them: work still to do, not internal helpers.
NOT_YET_APPLIED = {
    "billing.rules.ledger.plan_refund": "a refund of wallet money not yet sent to the meter has no use case",
    "billing.rules.tariffs.standing_charge": "invoices do not bill the tariff's standing charge yet",
    "billing.self_service.sms_requests_of": "a subscriber's SMS requests: not shown on the card yet",
}


def _caller_map() -> object:
    spec = importlib.util.spec_from_file_location("caller_map", ROOT / "scripts" / "caller_map.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("caller_map", module)
    spec.loader.exec_module(module)
    return module


def test_no_public_function_of_billing_or_the_gateway_is_called_only_by_tests() -> None:
    doorless = set(_caller_map().doorless())  # type: ignore[attr-defined]
    new = sorted(doorless - INTERNAL.keys() - NOT_YET_APPLIED.keys())
    assert new == [], "called only by tests (give it a door, make it private, or name it here with why)"
    # a name listed here that has found a caller may be taken off; `python scripts/caller_map.py` shows which
