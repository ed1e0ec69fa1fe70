"""The gateway's frame counters of each meter move from `meters` (billing's) to `meter_counters` (the gateway's):
the next head-end → meter counter and the meter → head-end replay window, copied over (and back on downgrade).

Revision ID: 0024
Revises: 0023
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_COLUMNS = (("next_counter", "1"), ("in_highest", "0"), ("in_bitmap", "0"))


def upgrade() -> None:
    op.create_table(
        "meter_counters",
        sa.Column("meter_id", _ID, autoincrement=False, nullable=False),
        *(sa.Column(name, sa.BigInteger(), server_default=start, nullable=False) for name, start in _COLUMNS),
        sa.ForeignKeyConstraint(["meter_id"], ["meters.id"], name=op.f("fk_meter_counters_meter_id_meters")),
        sa.PrimaryKeyConstraint("meter_id", name=op.f("pk_meter_counters")),
    )
    op.execute(
        "INSERT INTO meter_counters (meter_id, next_counter, in_highest, in_bitmap)"
        " SELECT id, next_counter, in_highest, in_bitmap FROM meters"
    )
    # a plain ALTER TABLE … DROP COLUMN on both databases (SQLite since 3.35): rebuilding `meters`, which so many
    # tables reference, would drop a parent table that rows point to
    for name, _ in _COLUMNS:
        op.drop_column("meters", name)


def downgrade() -> None:
    for name, start in _COLUMNS:
        op.add_column("meters", sa.Column(name, sa.BigInteger(), server_default=start, nullable=False))
    op.execute(
        "UPDATE meters SET"
        + ",".join(
            f" {name} = (SELECT c.{name} FROM meter_counters c WHERE c.meter_id = meters.id)" for name, _ in _COLUMNS
        )
        + " WHERE id IN (SELECT meter_id FROM meter_counters)"
    )
    op.drop_table("meter_counters")
