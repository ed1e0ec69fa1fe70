"""Outbound event webhooks: subscriptions, the event outbox, one delivery per event and subscription, and
every delivery attempt.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "event_subscriptions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("kinds", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("active", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_subscriptions")),
    )
    op.create_table(
        "event_outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("occurred_at", _AT, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("fanned_out_at", _AT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_event_outbox_event_id")),
    )
    op.create_index("ix_event_outbox_pending", "event_outbox", ["fanned_out_at", "id"], unique=False)
    op.create_table(
        "event_deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("event_row_id", _ID, nullable=False),
        sa.Column("subscription_id", _ID, nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", _AT, nullable=True),
        sa.Column("claimed_until", _AT, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("delivered_at", _AT, nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["event_row_id"], ["event_outbox.id"], name=op.f("fk_event_deliveries_event_row_id_event_outbox")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["event_subscriptions.id"],
            name=op.f("fk_event_deliveries_subscription_id_event_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_deliveries")),
        sa.UniqueConstraint(
            "event_row_id", "subscription_id", name=op.f("uq_event_deliveries_event_row_id_subscription_id")
        ),
    )
    op.create_index("ix_event_deliveries_due", "event_deliveries", ["state", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_event_deliveries_subscription_id"), "event_deliveries", ["subscription_id"], unique=False)
    op.create_table(
        "event_attempts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("delivery_id", _ID, nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["event_deliveries.id"], name=op.f("fk_event_attempts_delivery_id_event_deliveries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_attempts")),
    )
    op.create_index(op.f("ix_event_attempts_delivery_id"), "event_attempts", ["delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_event_attempts_delivery_id"), table_name="event_attempts")
    op.drop_table("event_attempts")
    op.drop_index(op.f("ix_event_deliveries_subscription_id"), table_name="event_deliveries")
    op.drop_index("ix_event_deliveries_due", table_name="event_deliveries")
    op.drop_table("event_deliveries")
    op.drop_index("ix_event_outbox_pending", table_name="event_outbox")
    op.drop_table("event_outbox")
    op.drop_table("event_subscriptions")
