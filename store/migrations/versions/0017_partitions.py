"""The tables that grow for years split by month on PostgreSQL (`store.partitions`): command history, wrong SMS
and the audit log become range-partitioned on their time, their existing rows one partition, with a default
partition and the months ahead. Nothing changes on SQLite (retention deletes in batches there).

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from alembic import op

from store.partitions import Growing, partition_existing, unpartition

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONTHS_AHEAD = 3
PARTITIONED = (
    Growing("command_history", "at", True),
    Growing("wrong_sms", "received_at", True),
    Growing("audit_log", "at", True),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    now = datetime.now(UTC)
    for g in PARTITIONED:
        partition_existing(bind, g, now, MONTHS_AHEAD)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for g in reversed(PARTITIONED):
        unpartition(bind, g)
