"""Pure billing rules: money, ledger postings, tariffs, arrears policy, subscriber codes, notices, invoice
content, consumption and transformer losses. No I/O, no clock: time and state are handed in."""

from billing.rules.arrears import (
    ArrearsDecision,
    ArrearsPolicy,
    ArrearsState,
    FriendlyCalendar,
    PenaltyRule,
    Stage,
    decide,
)
from billing.rules.codes import SubscriberCode, make_subscriber_code, parse_subscriber_code, validate_subscriber_code
from billing.rules.ledger import Balances, Book, EntryType, Ledger, Posting, TopUpPlan, plan_reversal, plan_top_up
from billing.rules.losses import LossResult, transformer_loss
from billing.rules.money import Money
from billing.rules.tariffs import Step, TariffBody, TariffKind, TariffVersion, cost_of, version_at

__all__ = [
    "ArrearsDecision",
    "ArrearsPolicy",
    "ArrearsState",
    "Balances",
    "Book",
    "EntryType",
    "FriendlyCalendar",
    "Ledger",
    "LossResult",
    "Money",
    "PenaltyRule",
    "Posting",
    "Stage",
    "Step",
    "SubscriberCode",
    "TariffBody",
    "TariffKind",
    "TariffVersion",
    "TopUpPlan",
    "cost_of",
    "decide",
    "make_subscriber_code",
    "parse_subscriber_code",
    "plan_reversal",
    "plan_top_up",
    "transformer_loss",
    "validate_subscriber_code",
    "version_at",
]
