"""How a payment conflict was resolved: `resolution` (credit | dismiss) and the operator's note, beside
`resolved_at` and `resolved_by`.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment_conflicts") as batch:
        batch.add_column(sa.Column("resolution", sa.String(20)))
        batch.add_column(sa.Column("resolution_note", sa.String(500)))
        batch.add_column(sa.Column("topup_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")))


def downgrade() -> None:
    with op.batch_alter_table("payment_conflicts") as batch:
        batch.drop_column("topup_id")
        batch.drop_column("resolution_note")
        batch.drop_column("resolution")
