"""The gateway area's schema changes: one SMS-part row per part per attempt; wrong SMS name their meter.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("command_parts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_command_parts_command_id_seq", type_="unique")
        batch_op.create_unique_constraint("uq_command_parts_command_id_attempt_seq", ["command_id", "attempt", "seq"])
    with op.batch_alter_table("wrong_sms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meter_id", _ID, nullable=True))
        batch_op.create_foreign_key("fk_wrong_sms_meter_id_meters", "meters", ["meter_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("wrong_sms", schema=None) as batch_op:
        batch_op.drop_constraint("fk_wrong_sms_meter_id_meters", type_="foreignkey")
        batch_op.drop_column("meter_id")
    with op.batch_alter_table("command_parts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_command_parts_command_id_attempt_seq", type_="unique")
        batch_op.create_unique_constraint("uq_command_parts_command_id_seq", ["command_id", "seq"])
