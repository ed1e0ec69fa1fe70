"""`held_receipts`: delivery receipts whose part is not known yet, kept in the database so that a restart does
not lose them (the SMSC was answered) and they are matched once the part's message id is recorded.

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "held_receipts",
        sa.Column("message_id", sa.String(length=65), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("done_at", _AT, nullable=True),
        sa.Column("held_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_held_receipts")),
    )


def downgrade() -> None:
    op.drop_table("held_receipts")
