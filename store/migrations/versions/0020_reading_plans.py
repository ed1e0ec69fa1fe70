"""Scheduled reading: `reading_plans` (what to read from which group of meters, how often, in which local
window) and `reading_plan_runs` (each occasion of a plan, its bulk job of read requests, its pace and cursor).

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reading_plans",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("items", sa.String(length=20), nullable=False),
        sa.Column("every", sa.String(length=10), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("group_kind", sa.String(length=20), nullable=False),
        sa.Column("group_code", sa.String(length=30), nullable=True),
        sa.Column("window_start_min", sa.Integer(), nullable=False),
        sa.Column("window_end_min", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reading_plans")),
    )
    op.create_table(
        "reading_plan_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("plan_id", _ID, nullable=False),
        sa.Column("occasion", sa.String(length=40), nullable=False),
        sa.Column("job_id", _ID, nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("window_ends_at", _AT, nullable=False),
        sa.Column("rate_per_s", sa.Float(), nullable=False),
        sa.Column("cursor_meter_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_tick_at", _AT, nullable=True),
        sa.Column("finished_at", _AT, nullable=True),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["reading_plans.id"], name=op.f("fk_reading_plan_runs_plan_id_reading_plans")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["bulk_jobs.id"], name=op.f("fk_reading_plan_runs_job_id_bulk_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reading_plan_runs")),
        sa.UniqueConstraint("job_id", name=op.f("uq_reading_plan_runs_job_id")),
        sa.UniqueConstraint("plan_id", "occasion", name=op.f("uq_reading_plan_runs_plan_id_occasion")),
    )
    op.create_index(op.f("ix_reading_plan_runs_plan_id"), "reading_plan_runs", ["plan_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_reading_plan_runs_plan_id"), table_name="reading_plan_runs")
    op.drop_table("reading_plan_runs")
    op.drop_table("reading_plans")
