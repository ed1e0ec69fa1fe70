"""A meter's firmware, as the manufacturer's key file gives it (meters received in stock).

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("meters") as batch:
        batch.add_column(sa.Column("firmware", sa.String(50)))


def downgrade() -> None:
    with op.batch_alter_table("meters") as batch:
        batch.drop_column("firmware")
