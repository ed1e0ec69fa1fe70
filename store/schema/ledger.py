"""Tariffs, accounts and the append-only ledger (owned by billing)."""

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, String, Table, UniqueConstraint

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
