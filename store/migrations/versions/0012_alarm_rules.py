"""Alarms reach people: `alarm_rules` (per alarm kind and severity: e-mail and/or SMS to recipients or a role,
and an optional automatic action); operators gain an e-mail address and a phone number; notices may go to an
operator about an alarm (`subscriber_id` NULL, `alarm_id`); alarms gain `open_key` (one open alarm per
repeated condition), `notified_at` and the automatic action's state. Alarms raised before this revision count
as notified, so an upgrade sends nothing about the past.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alarm_rules",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("min_severity", sa.String(length=10), nullable=False),
        sa.Column("email", sa.Integer(), server_default="1", nullable=False),
        sa.Column("sms", sa.Integer(), server_default="0", nullable=False),
        sa.Column("role", sa.String(length=20), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(length=20), server_default="none", nullable=False),
        sa.Column("enabled", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["role"], ["roles.name"], name=op.f("fk_alarm_rules_role_roles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_rules")),
    )
    with op.batch_alter_table("operators") as batch:
        batch.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("phone", sa.String(length=30), nullable=True))
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("open_key", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("action_state", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("action_detail", sa.String(length=200), nullable=True))
        batch.create_unique_constraint(batch.f("uq_alarms_open_key"), ["open_key"])
        batch.create_index(batch.f("ix_alarms_notified_at"), ["notified_at"], unique=False)
        batch.create_index(batch.f("ix_alarms_action_state"), ["action_state"], unique=False)
    with op.batch_alter_table("notices") as batch:
        batch.alter_column("subscriber_id", existing_type=_ID, nullable=True)
        batch.add_column(sa.Column("alarm_id", _ID, nullable=True))
        batch.create_foreign_key(batch.f("fk_notices_alarm_id_alarms"), "alarms", ["alarm_id"], ["id"])
    op.execute("UPDATE alarms SET notified_at = raised_at")


def downgrade() -> None:
    op.execute("DELETE FROM notices WHERE subscriber_id IS NULL")
    with op.batch_alter_table("notices") as batch:
        batch.drop_constraint(batch.f("fk_notices_alarm_id_alarms"), type_="foreignkey")
        batch.drop_column("alarm_id")
        batch.alter_column("subscriber_id", existing_type=_ID, nullable=False)
    with op.batch_alter_table("alarms") as batch:
        batch.drop_index(batch.f("ix_alarms_action_state"))
        batch.drop_index(batch.f("ix_alarms_notified_at"))
        batch.drop_constraint(batch.f("uq_alarms_open_key"), type_="unique")
        batch.drop_column("action_detail")
        batch.drop_column("action_state")
        batch.drop_column("notified_at")
        batch.drop_column("open_key")
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("phone")
        batch.drop_column("email")
    op.drop_table("alarm_rules")
