"""PostgreSQL: a statement that inserts commands NOTIFYs `smsmeter_commands` (a trigger), so a dispatcher in
another process wakes when the inserting transaction commits, without a NOTIFY round trip of its own.
SQLite has no NOTIFY: nothing changes there.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION smsmeter_notify_commands() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM inserted) THEN
                PERFORM pg_notify('smsmeter_commands', '');
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER commands_notify AFTER INSERT ON commands REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION smsmeter_notify_commands()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER commands_notify ON commands")
    op.execute("DROP FUNCTION smsmeter_notify_commands()")
