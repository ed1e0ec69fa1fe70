"""Payments, processed webhook events, disputes and payment conflicts (owned by payments).

A payment row is made when a top-up starts (Stripe Checkout: status pending, our `reference`) or when a
provider first reports it. `paid_at` is set once, in the transaction that credits it; `reversed_minor` is
what the ledger has taken back so far (refunds, disputes), converging on what the provider reports.
"""

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Integer, String, Table, UniqueConstraint

from store.metadata import metadata
from store.types import ID, UtcDateTime

payments = Table(
    "payments",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("provider", String(30), nullable=False),  # stripe | cash | <provider name>
    Column("provider_ref", String(200), nullable=False),  # PaymentIntent / Session / provider transaction id
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), nullable=False, index=True),
    Column("meter_id", ID, ForeignKey("meters.id")),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # pending | awaiting | failed | paid | partially_refunded | refunded | disputed
    Column("status", String(20), nullable=False),
    Column("checkout_session_id", String(200), unique=True),
    Column("payment_intent_id", String(200), unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("paid_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    # Added by 0004_payments:
    Column("reference", String(64), unique=True),  # our top-up reference: Checkout client_reference_id
    Column("charge_id", String(200), index=True),
    Column("checkout_url", String(2000)),
    Column("refunded_minor", BigInteger, nullable=False, server_default="0"),  # the provider's running total
    Column("reversed_minor", BigInteger, nullable=False, server_default="0"),  # taken back in the ledger
    Column("adjustments", Integer, nullable=False, server_default="0"),  # ledger reversals/reinstatements made
    Column("fee_minor", BigInteger),  # the provider's fee, from reconciliation
    Column("credit_command_id", ID, ForeignKey("commands.id")),
    Column("failure_reason", String(200)),
    UniqueConstraint("provider", "provider_ref"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("provider", String(30), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("outcome", String(30), nullable=False),  # applied | recorded | ignored | conflict
    # Added by 0004_payments:
    Column("payment_id", ID, ForeignKey("payments.id"), index=True),
    Column("detail", String(500)),
    UniqueConstraint("provider", "event_id"),
)

payment_conflicts = Table(
    "payment_conflicts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("provider", String(30), nullable=False),
    Column("provider_ref", String(200), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("details", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("resolved_by", String(100)),
    # Added by 0004_payments:
    Column("event_id", String(200)),
    Column("payment_id", ID, ForeignKey("payments.id")),
    # Added by 0008_conflict_resolutions: credit (the payment applied as the provider reported it) | dismiss
    Column("resolution", String(20)),
    Column("resolution_note", String(500)),
    Column("topup_id", ID),  # the top-up a `credit` resolution made
)

# One row per dispute; `state` open | inquiry | won | lost. Closed disputes never reopen.
payment_disputes = Table(
    "payment_disputes",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("provider", String(30), nullable=False),
    Column("dispute_id", String(200), nullable=False),
    Column("payment_id", ID, ForeignKey("payments.id"), nullable=False, index=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("state", String(10), nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime),
    UniqueConstraint("provider", "dispute_id"),
)

# One row per reconciliation run (the daily job or the CLI): its window and what it found.
reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("provider", String(30), nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("counts", JSON),  # {"matched": n, "applied": n, "missing_there": n, ...}
    Column("report_path", String(500)),
    Column("triggered_by", String(100), nullable=False),
    # Added by 0023_reconciliation_batches: how far an unfinished run got (it resumes there). `phase` is
    # intents (the provider's listing, in payment-intent order; `position` the last one done) | ours (our paid
    # payments; `position` the last payments.id) | delivery (the same for the credit commands) | done.
    Column("phase", String(10), nullable=False, server_default="intents"),
    Column("position", String(200), nullable=False, server_default=""),
    Column("items", BigInteger, nullable=False, server_default="0"),  # looked at so far
    # Added by 0025_reconciliation_lease: until when the process working on the run holds it (each batch moves
    # it on); one process at a time works on a run, and a lapsed lease lets the next carry it on.
    Column("lease_until", UtcDateTime),
)

# What a reconciliation run found, one row a finding (a run's report lines), written with its batch.
reconciliation_findings = Table(
    "reconciliation_findings",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("run_id", ID, ForeignKey("reconciliation_runs.id"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("provider", String(30), nullable=False),
    Column("provider_ref", String(200), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("our_amount_minor", BigInteger),
    Column("their_amount_minor", BigInteger),
    Column("fee_minor", BigInteger),
    Column("command_state", String(10), nullable=False),
    Column("detail", String(500), nullable=False),
)
