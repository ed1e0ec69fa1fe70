"""The payments area's schema changes: top-up references, refunds and reversals, disputes, reconciliation.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("charge_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("checkout_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("refunded_minor", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("reversed_minor", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("adjustments", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("fee_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("credit_command_id", ID, nullable=True))
        batch_op.add_column(sa.Column("failure_reason", sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_payments_reference"), ["reference"])
        batch_op.create_index(batch_op.f("ix_payments_charge_id"), ["charge_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_payments_credit_command_id_commands"), "commands", ["credit_command_id"], ["id"]
        )

    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payment_id", ID, nullable=True))
        batch_op.add_column(sa.Column("detail", sa.String(length=500), nullable=True))
        batch_op.create_index(batch_op.f("ix_webhook_events_payment_id"), ["payment_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_webhook_events_payment_id_payments"), "payments", ["payment_id"], ["id"]
        )

    with op.batch_alter_table("payment_conflicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("payment_id", ID, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_payment_conflicts_payment_id_payments"), "payments", ["payment_id"], ["id"]
        )

    op.create_table(
        "payment_disputes",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("dispute_id", sa.String(length=200), nullable=False),
        sa.Column("payment_id", ID, nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_payment_disputes_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_disputes")),
        sa.UniqueConstraint("provider", "dispute_id", name=op.f("uq_payment_disputes_provider_dispute_id")),
    )
    with op.batch_alter_table("payment_disputes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_disputes_payment_id"), ["payment_id"], unique=False)

    op.create_table(
        "reconciliation_runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.Column("report_path", sa.String(length=500), nullable=True),
        sa.Column("triggered_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_runs")
    with op.batch_alter_table("payment_disputes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_disputes_payment_id"))
    op.drop_table("payment_disputes")

    with op.batch_alter_table("payment_conflicts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_payment_conflicts_payment_id_payments"), type_="foreignkey")
        batch_op.drop_column("payment_id")
        batch_op.drop_column("event_id")

    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_webhook_events_payment_id_payments"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_webhook_events_payment_id"))
        batch_op.drop_column("detail")
        batch_op.drop_column("payment_id")

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_payments_credit_command_id_commands"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_payments_charge_id"))
        batch_op.drop_constraint(batch_op.f("uq_payments_reference"), type_="unique")
        batch_op.drop_column("failure_reason")
        batch_op.drop_column("credit_command_id")
        batch_op.drop_column("fee_minor")
        batch_op.drop_column("adjustments")
        batch_op.drop_column("reversed_minor")
        batch_op.drop_column("refunded_minor")
        batch_op.drop_column("checkout_url")
        batch_op.drop_column("charge_id")
        batch_op.drop_column("reference")
