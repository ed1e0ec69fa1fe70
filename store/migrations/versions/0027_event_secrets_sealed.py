"""Event webhook secrets sealed under the master key, and rotated: `secret_sealed` holds a subscription's
signing secret wrapped (RFC 5649) under the master key, `secret_hint` its last four characters, and
`previous_secret_sealed` / `previous_until` the secret a rotation replaced, which signs beside the new one until
then. The migration has no master key: it keeps each plain `secret` (now nullable) and its hint; the service's
delivery job seals it and clears the plain column on its first run.

Revision ID: 0027
Revises: 0026
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("event_subscriptions", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(100), nullable=True)
        batch_op.add_column(sa.Column("secret_sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("secret_hint", sa.String(10), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("previous_secret_sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("previous_until", _AT, nullable=True))
    table = sa.table("event_subscriptions", sa.column("id"), sa.column("secret"), sa.column("secret_hint"))
    bind = op.get_bind()
    for row_id, secret in bind.execute(sa.select(table.c.id, table.c.secret)).all():
        bind.execute(sa.update(table).where(table.c.id == row_id).values(secret_hint=str(secret or "")[-4:]))


def downgrade() -> None:
    # a sealed secret cannot be written back in plain without the master key: downgrading loses it (the
    # subscription must be given a new secret after an upgrade again)
    with op.batch_alter_table("event_subscriptions", schema=None) as batch_op:
        batch_op.drop_column("previous_until")
        batch_op.drop_column("previous_secret_sealed")
        batch_op.drop_column("secret_hint")
        batch_op.drop_column("secret_sealed")
    op.execute("UPDATE event_subscriptions SET secret = '' WHERE secret IS NULL")
    with op.batch_alter_table("event_subscriptions", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(100), nullable=False)
