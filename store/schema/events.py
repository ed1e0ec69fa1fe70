"""Outbound event webhooks: who follows the head end (`event_subscriptions`, owned by billing), the events to
tell them of (`event_outbox`, written through `store.events` in the transaction of the change that causes
them, or by billing's event feed from the rows a change left), one delivery per event and subscription
(`event_deliveries`) and every attempt at it (`event_attempts`)."""

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, LargeBinary, String, Table, UniqueConstraint

from store.metadata import metadata
from store.types import ID, UtcDateTime

# A URL that receives signed POSTs of the kinds it asked for (`kinds`: comma-separated reading, alarm,
# command, payment). Its secret signs them (HMAC-SHA256), kept wrapped under the master key (`secret_sealed`;
# 0027). After a rotation the one before still signs beside it until `previous_until`. `secret` holds the
# plain secret of a subscription made before 0027 until the delivery job seals it. A disabled subscription is
# told nothing new.
event_subscriptions = Table(
    "event_subscriptions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("url", String(500), nullable=False),
    Column("secret", String(100)),
    Column("secret_sealed", LargeBinary),
    Column("secret_hint", String(10), nullable=False, server_default=""),  # its last 4 characters, to tell them apart
    Column("previous_secret_sealed", LargeBinary),
    Column("previous_until", UtcDateTime),
    Column("kinds", String(100), nullable=False),
    Column("description", String(200)),
    Column("active", Integer, nullable=False, server_default="1"),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per event; `event_id` (unique) is what receivers deduplicate by, derived from the event's cause
# (e.g. `payment:<top-up id>`), so writing the same cause twice is a no-op. `fanned_out_at`: deliveries made.
event_outbox = Table(
    "event_outbox",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),  # reading | alarm | command | payment
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("fanned_out_at", UtcDateTime),
)
Index("ix_event_outbox_pending", event_outbox.c.fanned_out_at, event_outbox.c.id)

# One event to one subscription: pending (due at `next_attempt_at`) -> delivered | dead (attempts used up; a
# person may send it again). `claimed_until`: a worker is posting it.
event_deliveries = Table(
    "event_deliveries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("event_row_id", ID, ForeignKey("event_outbox.id"), nullable=False),
    Column("subscription_id", ID, ForeignKey("event_subscriptions.id"), nullable=False, index=True),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime),
    Column("claimed_until", UtcDateTime),
    Column("last_status", Integer),  # the receiver's HTTP status, NULL when it did not answer
    Column("last_error", String(300)),
    Column("delivered_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("event_row_id", "subscription_id"),
)
Index("ix_event_deliveries_due", event_deliveries.c.state, event_deliveries.c.next_attempt_at)

event_attempts = Table(
    "event_attempts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("delivery_id", ID, ForeignKey("event_deliveries.id"), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("status", Integer),  # HTTP status; NULL: no answer (refused, timed out)
    Column("error", String(300)),
    Column("duration_ms", Integer, nullable=False),
)
