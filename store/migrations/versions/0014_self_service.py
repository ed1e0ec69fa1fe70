"""Subscriber self-service on the short number: `sms_requests` (every keyword SMS and its answer) and the
scratch-card vouchers (`voucher_batches`, `vouchers`, each code kept only as its SHA-256).

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "voucher_batches",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_batches")),
    )
    op.create_table(
        "vouchers",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("batch_id", _ID, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="new", nullable=False),
        sa.Column("used_at", _AT, nullable=True),
        sa.Column("used_by", _ID, nullable=True),
        sa.Column("topup_id", _ID, nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["voucher_batches.id"], name=op.f("fk_vouchers_batch_id_voucher_batches")
        ),
        sa.ForeignKeyConstraint(["used_by"], ["subscribers.id"], name=op.f("fk_vouchers_used_by_subscribers")),
        sa.ForeignKeyConstraint(["topup_id"], ["topups.id"], name=op.f("fk_vouchers_topup_id_topups")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_vouchers_code_hash")),
    )
    op.create_index(op.f("ix_vouchers_batch_id"), "vouchers", ["batch_id"], unique=False)
    op.create_table(
        "sms_requests",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("received_at", _AT, nullable=False),
        sa.Column("msisdn", sa.String(length=30), nullable=False),
        sa.Column("subscriber_id", _ID, nullable=False),
        sa.Column("keyword", sa.String(length=10), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("language", sa.String(length=5), nullable=False),
        sa.Column("notice_id", _ID, nullable=True),
        sa.Column("topup_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name=op.f("fk_sms_requests_subscriber_id_subscribers")
        ),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"], name=op.f("fk_sms_requests_notice_id_notices")),
        sa.ForeignKeyConstraint(["topup_id"], ["topups.id"], name=op.f("fk_sms_requests_topup_id_topups")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_requests")),
    )
    op.create_index(op.f("ix_sms_requests_subscriber_id"), "sms_requests", ["subscriber_id"], unique=False)
    op.create_index("ix_sms_requests_msisdn_received", "sms_requests", ["msisdn", "received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sms_requests_msisdn_received", table_name="sms_requests")
    op.drop_index(op.f("ix_sms_requests_subscriber_id"), table_name="sms_requests")
    op.drop_table("sms_requests")
    op.drop_index(op.f("ix_vouchers_batch_id"), table_name="vouchers")
    op.drop_table("vouchers")
    op.drop_table("voucher_batches")
