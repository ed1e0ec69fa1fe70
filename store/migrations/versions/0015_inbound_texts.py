"""Text SMS from subscribers' phones kept in the transaction that received them (`inbound_texts`), answered by
the self-service worker: what was received and not yet answered survives a restart.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbound_texts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("received_at", _AT, nullable=False),
        sa.Column("source", sa.String(length=30), nullable=False),
        sa.Column("destination", sa.String(length=30), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("data_coding", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_until", _AT, nullable=True),
        sa.Column("handled_at", _AT, nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_texts")),
    )
    op.create_index("ix_inbound_texts_pending", "inbound_texts", ["handled_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_inbound_texts_pending", table_name="inbound_texts")
    op.drop_table("inbound_texts")
