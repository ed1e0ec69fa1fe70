"""Reconciliation runs leased: `lease_until` on `reconciliation_runs` names until when the process working on a
run holds it (each batch moves it on), so the scheduler, the console, the API and the CLI never work on one run
at the same time; a run whose lease has lapsed (its process stopped) is carried on by the next that asks.

Revision ID: 0025
Revises: 0024
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", _AT, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
