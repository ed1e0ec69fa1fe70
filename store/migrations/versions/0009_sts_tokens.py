"""STS keypad tokens: `sts_meters` (a meter's keypad parameters and its key change state),
`sts_vending_keys` (wrapped under the master key), and on `topups` the path that delivered the transfer
(`delivered_by`: sms | token), its token and a late SMS acknowledgement.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UtcDateTime = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sts_meters",
        sa.Column("meter_id", ID, sa.ForeignKey("meters.id"), primary_key=True),
        sa.Column("iin", sa.String(6), nullable=False),
        sa.Column("drn", sa.String(13), nullable=False),
        sa.Column("supply_group_code", sa.String(6), nullable=False),
        sa.Column("tariff_index", sa.Integer, nullable=False),
        sa.Column("key_revision", sa.Integer, nullable=False),
        sa.Column("key_type", sa.Integer, nullable=False),
        sa.Column("key_expiry", sa.Integer, nullable=False, server_default="255"),
        sa.Column("base_date_year", sa.Integer, nullable=False, server_default="1993"),
        sa.Column("key_change_state", sa.String(10), nullable=False, server_default="none"),
        sa.Column("key_change_revision", sa.Integer),
        sa.Column("key_change_tokens", sa.String(44)),
        sa.Column("key_change_issued_at", UtcDateTime),
        sa.Column("key_change_accepted_at", UtcDateTime),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "sts_vending_keys",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("supply_group_code", sa.String(6), nullable=False),
        sa.Column("key_revision", sa.Integer, nullable=False),
        sa.Column("algorithm", sa.String(8), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("supply_group_code", "key_revision"),
    )
    with op.batch_alter_table("topups") as batch:
        batch.add_column(sa.Column("delivered_by", sa.String(8)))
        batch.add_column(sa.Column("sts_token", sa.String(20)))
        batch.add_column(sa.Column("token_issued_at", UtcDateTime))
        batch.add_column(sa.Column("sms_acked_at", UtcDateTime))


def downgrade() -> None:
    with op.batch_alter_table("topups") as batch:
        batch.drop_column("sms_acked_at")
        batch.drop_column("token_issued_at")
        batch.drop_column("sts_token")
        batch.drop_column("delivered_by")
    op.drop_table("sts_vending_keys")
    op.drop_table("sts_meters")
