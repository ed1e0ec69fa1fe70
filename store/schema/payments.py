"""Payments, processed webhook events and payment conflicts (owned by payments)."""

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, String, Table, UniqueConstraint

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
    Column("status", String(20), nullable=False),  # pending | paid | failed | refunded | disputed | ...
    Column("checkout_session_id", String(200), unique=True),
    Column("payment_intent_id", String(200), unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("paid_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
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
    Column("outcome", String(30), nullable=False),  # applied | ignored | conflict | ...
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
)
