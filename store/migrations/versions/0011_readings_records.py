"""Readings as records: each reading's `source` (meter_report | read_request | manual | import), validation
`status` (ok | gap | backwards | spike | estimated) and who entered it; `consumption_daily`, the per-day
pre-aggregate in the utility's time zone; `job_watermarks` for incremental jobs.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.add_column(sa.Column("source", sa.String(20), server_default="meter_report", nullable=False))
        batch.add_column(sa.Column("status", sa.String(12), server_default="ok", nullable=False))
        batch.add_column(sa.Column("entered_by", sa.String(100)))
        batch.create_index("ix_readings_read_at", ["read_at"], unique=False)
    op.create_table(
        "consumption_daily",
        sa.Column("meter_id", _ID, nullable=False),
        sa.Column("register", sa.String(30), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("readings", sa.Integer(), server_default="0", nullable=False),
        sa.Column("estimated", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["meter_id"], ["meters.id"], name=op.f("fk_consumption_daily_meter_id_meters")),
        sa.PrimaryKeyConstraint("meter_id", "register", "day", name=op.f("pk_consumption_daily")),
    )
    op.create_table(
        "job_watermarks",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("position", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_watermarks")),
    )


def downgrade() -> None:
    op.drop_table("job_watermarks")
    op.drop_table("consumption_daily")
    with op.batch_alter_table("readings") as batch:
        batch.drop_index("ix_readings_read_at")
        batch.drop_column("entered_by")
        batch.drop_column("status")
        batch.drop_column("source")
