"""Net billing for prosumers, a tariff option: `tariffs.net_billing` — off (the import register alone), net
(import − export over the period, never below zero) or carry (net, the surplus carried over as energy to the
next period).

Revision ID: 0022
Revises: 0021
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tariffs") as batch:
        batch.add_column(sa.Column("net_billing", sa.String(length=10), server_default="off", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("tariffs") as batch:
        batch.drop_column("net_billing")
