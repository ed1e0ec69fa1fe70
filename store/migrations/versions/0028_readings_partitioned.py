"""Readings split by month on PostgreSQL (`store.partitions`), as command history, wrong SMS and the audit log
are: the table becomes range-partitioned on `read_at`, its existing rows one partition, with a default
partition and the months ahead; its unique key (meter, register, read_at) holds the month already. The
consumption dashboard reads the pre-aggregated `consumption_daily`; what reads the readings themselves (a
meter's history, the hourly view, the MDM export) asks for a time range, which only touches its months.
Nothing changes on SQLite.

Revision ID: 0028
Revises: 0027
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from alembic import op

from store.partitions import Growing, partition_existing, unpartition

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONTHS_AHEAD = 3
READINGS = Growing("readings", "read_at", True)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        partition_existing(bind, READINGS, datetime.now(UTC), MONTHS_AHEAD)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        unpartition(bind, READINGS)
