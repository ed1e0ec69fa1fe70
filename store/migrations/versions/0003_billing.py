"""The billing area's schema changes: top-ups, arrears state, bulk jobs with progress, gapless numbers,
invoices, transformer balances, the holiday calendar, meter history; the next transfer id per meter and
delivery fields on notices.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bulk_jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_jobs")),
    )
    op.create_table(
        "holidays",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_holidays")),
    )
    op.create_table(
        "number_sequences",
        sa.Column("name", sa.String(length=30), nullable=False),
        sa.Column("next_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_number_sequences")),
    )
    op.create_table(
        "transformer_balances",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("transformer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supplied_wh", sa.BigInteger(), nullable=False),
        sa.Column("billed_wh", sa.BigInteger(), nullable=False),
        sa.Column("loss_bp", sa.Integer(), nullable=False),
        sa.Column("alarm", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["transformer_id"], ["transformers.id"], name=op.f("fk_transformer_balances_transformer_id_transformers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transformer_balances")),
        sa.UniqueConstraint(
            "transformer_id",
            "period_start",
            "period_end",
            name=op.f("uq_transformer_balances_transformer_id_period_start_period_end"),
        ),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=30), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_invoices_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name=op.f("fk_invoices_subscriber_id_subscribers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("subscriber_id", "period_start", name=op.f("uq_invoices_subscriber_id_period_start")),
    )
    op.create_table(
        "meter_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("meter_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        sa.Column("event", sa.String(length=30), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["meter_id"], ["meters.id"], name=op.f("fk_meter_history_meter_id_meters")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_history")),
    )
    with op.batch_alter_table("meter_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meter_history_meter_id"), ["meter_id"], unique=False)

    op.create_table(
        "arrears",
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("overdue_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stage", sa.String(length=12), server_default="none", nullable=False),
        sa.Column("stage_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("penalties_applied", sa.Integer(), server_default="0", nullable=False),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disconnect_command_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("emergency_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deferred", sa.String(length=20), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_arrears_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["disconnect_command_id"], ["commands.id"], name=op.f("fk_arrears_disconnect_command_id_commands")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_arrears")),
    )
    op.create_table(
        "topups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("meter_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("recovered_minor", sa.BigInteger(), nullable=False),
        sa.Column("vend_minor", sa.BigInteger(), nullable=False),
        sa.Column("reversed_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("transfer_id", sa.BigInteger(), nullable=True),
        sa.Column("command_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reconnect_command_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("receipt_number", sa.String(length=30), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_topups_account_id_accounts")),
        sa.ForeignKeyConstraint(["command_id"], ["commands.id"], name=op.f("fk_topups_command_id_commands")),
        sa.ForeignKeyConstraint(["meter_id"], ["meters.id"], name=op.f("fk_topups_meter_id_meters")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_topups_payment_id_payments")),
        sa.ForeignKeyConstraint(
            ["reconnect_command_id"], ["commands.id"], name=op.f("fk_topups_reconnect_command_id_commands")
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name=op.f("fk_topups_subscriber_id_subscribers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topups")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_topups_idempotency_key")),
        sa.UniqueConstraint("receipt_number", name=op.f("uq_topups_receipt_number")),
    )
    with op.batch_alter_table("topups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_topups_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_topups_command_id"), ["command_id"], unique=False)

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entries_debt",
            ["account_id", "amount_minor"],
            unique=False,
            postgresql_where=sa.text("book = 'debt'"),
            sqlite_where=sa.text("book = 'debt'"),
        )

    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_transfer_id", sa.BigInteger(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("notes", sa.String(length=500), nullable=True))

    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_notices_status_next", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_debt")

    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_status_next")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
        batch_op.drop_column("language")
        batch_op.drop_column("recipient")

    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.drop_column("notes")
        batch_op.drop_column("next_transfer_id")

    with op.batch_alter_table("topups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topups_command_id"))
        batch_op.drop_index(batch_op.f("ix_topups_account_id"))

    op.drop_table("topups")
    op.drop_table("arrears")
    with op.batch_alter_table("meter_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meter_history_meter_id"))

    op.drop_table("meter_history")
    op.drop_table("invoices")
    op.drop_table("transformer_balances")
    op.drop_table("number_sequences")
    op.drop_table("holidays")
    op.drop_table("bulk_jobs")
