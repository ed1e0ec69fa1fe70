"""STS6 meters (16-byte MISTY1 decoder keys) take a key change of four tokens: `sts_meters.key_change_tokens`
grows from 44 to 90 characters ("<t1> <t2> <t3> <t4> R").

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sts_meters") as batch:
        batch.alter_column("key_change_tokens", existing_type=sa.String(length=44), type_=sa.String(length=90))


def downgrade() -> None:
    with op.batch_alter_table("sts_meters") as batch:
        batch.alter_column("key_change_tokens", existing_type=sa.String(length=90), type_=sa.String(length=44))
