"""Reconciliation in batches: a run's position (`phase`, `position`, `items` on `reconciliation_runs`) so an
unfinished run resumes where it stopped, and its findings in `reconciliation_findings`, written batch by batch.

Revision ID: 0023
Revises: 0022
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phase", sa.String(length=10), server_default="intents", nullable=False))
        batch_op.add_column(sa.Column("position", sa.String(length=200), server_default="", nullable=False))
        batch_op.add_column(sa.Column("items", sa.BigInteger(), server_default="0", nullable=False))
    op.execute("UPDATE reconciliation_runs SET phase = 'done' WHERE finished_at IS NOT NULL")
    op.create_table(
        "reconciliation_findings",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("our_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("their_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("fee_minor", sa.BigInteger(), nullable=True),
        sa.Column("command_state", sa.String(length=10), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_findings_run_id_reconciliation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_findings")),
    )
    op.create_index(op.f("ix_reconciliation_findings_run_id"), "reconciliation_findings", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_reconciliation_findings_run_id"), table_name="reconciliation_findings")
    op.drop_table("reconciliation_findings")
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.drop_column("items")
        batch_op.drop_column("position")
        batch_op.drop_column("phase")
