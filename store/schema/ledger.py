"""Tariffs, accounts and the append-only ledger (owned by billing)."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)

from store.metadata import metadata
from store.types import ID, UtcDateTime

tariffs = Table(
    "tariffs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("code", String(30), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(10), nullable=False),  # flat | block | tou
    Column("created_at", UtcDateTime, nullable=False),
    # prosumers: off | net (import − export, never below zero) | carry (net, the surplus to the next period)
    Column("net_billing", String(10), nullable=False, server_default="off"),
)

tariff_versions = Table(
    "tariff_versions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("tariff_id", ID, ForeignKey("tariffs.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("effective_from", UtcDateTime, nullable=False),
    Column("body", JSON, nullable=False),  # prices in minor units per kWh, tiers (Wh), bands; see billing.rules
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(100), nullable=False),
    UniqueConstraint("tariff_id", "version"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), nullable=False, unique=True),
    Column("currency", String(3), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Append-only. A balance is a sum of entries; nothing updates or deletes a row here.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    # payment | credit_sent | debt_recovery | penalty | fixed_charge | adjustment | refund | reversal | ...
    Column("entry_type", String(20), nullable=False),
    Column("book", String(10), nullable=False, server_default="wallet"),  # wallet | debt
    Column("amount_minor", BigInteger, nullable=False),  # signed, minor units of the account's currency
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("payment_id", ID, ForeignKey("payments.id")),
    Column("command_id", ID, ForeignKey("commands.id")),
    Column("memo", String(500)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(100), nullable=False),
)
Index("ix_ledger_entries_account", ledger_entries.c.account_id, ledger_entries.c.id)
# The arrears sweep sums only the debt book: a partial, covering index keeps that an index-only scan.
Index(
    "ix_ledger_entries_debt",
    ledger_entries.c.account_id,
    ledger_entries.c.amount_minor,
    postgresql_where=ledger_entries.c.book == "debt",
    sqlite_where=ledger_entries.c.book == "debt",
)

# One row per top-up: the payment (or cash), what repaid debt, what went to the meter and the credit command.
# A top-up counts as delivered only when its command reaches 1:1.
topups = Table(
    "topups",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),  # "<provider>:<provider ref>"
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), nullable=False),
    Column("meter_id", ID, ForeignKey("meters.id")),
    Column("payment_id", ID, ForeignKey("payments.id")),
    Column("provider", String(30), nullable=False),  # stripe | cash | <provider name>
    Column("provider_ref", String(200), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("recovered_minor", BigInteger, nullable=False),
    Column("vend_minor", BigInteger, nullable=False),
    Column("reversed_minor", BigInteger, nullable=False, server_default="0"),
    Column("currency", String(3), nullable=False),
    Column("transfer_id", BigInteger),
    Column("command_id", ID, ForeignKey("commands.id"), index=True),
    Column("reconnect_command_id", ID, ForeignKey("commands.id")),
    # queued (command in the outbox) | delivered (1:1) | failed (the command's final failure) |
    # held (no meter: the credit waits in the wallet) | reversed
    Column("state", String(12), nullable=False),
    Column("receipt_number", String(30), unique=True),  # cashier top-ups
    Column("created_by", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    # one transfer, two paths (docs/sts.md): sms (the credit command reached 1:1) | token (an STS token was
    # issued for it); a later 1:1 of the SMS of a transfer delivered by token is kept in sms_acked_at
    Column("delivered_by", String(8)),
    Column("sts_token", String(20)),
    Column("token_issued_at", UtcDateTime),
    Column("sms_acked_at", UtcDateTime),
)

# The arrears state of an account between sweeps. Absent or overdue_since NULL: no arrears episode.
arrears = Table(
    "arrears",
    metadata,
    Column("account_id", ID, ForeignKey("accounts.id"), primary_key=True),
    Column("overdue_since", UtcDateTime),
    Column("stage", String(12), nullable=False, server_default="none"),  # none | reminder | final | disconnect
    Column("stage_at", UtcDateTime),
    Column("penalties_applied", Integer, nullable=False, server_default="0"),
    Column("disconnected_at", UtcDateTime),
    Column("disconnect_command_id", ID, ForeignKey("commands.id")),
    Column("emergency_until", UtcDateTime),
    Column("deferred", String(20)),  # why a due disconnect waits: night | weekend | holiday | emergency_credit
    Column("updated_at", UtcDateTime, nullable=False),
)

# Long bulk operations (a tariff change for 100,000 meters, a group disconnect) with visible progress.
bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("kind", String(30), nullable=False),  # tariff | relay_off | relay_on | power_limit | time_sync | read
    Column("description", String(300), nullable=False),
    Column("params", JSON, nullable=False),
    Column("total", Integer, nullable=False),
    Column("done", Integer, nullable=False, server_default="0"),
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("status", String(10), nullable=False),  # running | done | failed
    Column("error", String(500)),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
)

# Gapless numbers (invoices, cash receipts): taken with an UPDATE in the transaction that uses the number,
# so a rollback gives it back.
number_sequences = Table(
    "number_sequences",
    metadata,
    Column("name", String(30), primary_key=True),
    Column("next_value", BigInteger, nullable=False),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("number", String(30), nullable=False, unique=True),
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), nullable=False),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("content", JSON, nullable=False),
    Column("pdf", LargeBinary),  # drawn from `content` when first asked for
    Column("emailed_at", UtcDateTime),
    UniqueConstraint("subscriber_id", "period_start"),
)

# A transformer's energy balance per period: its balance meter against the sum of its subscribers' meters.
transformer_balances = Table(
    "transformer_balances",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("transformer_id", ID, ForeignKey("transformers.id"), nullable=False),
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=False),
    Column("supplied_wh", BigInteger, nullable=False),
    Column("billed_wh", BigInteger, nullable=False),
    Column("loss_bp", Integer, nullable=False),
    Column("alarm", Integer, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
    UniqueConstraint("transformer_id", "period_start", "period_end"),
)
