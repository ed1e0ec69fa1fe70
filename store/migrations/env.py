"""Alembic environment. Migrations run on a connection handed in by `store.migrate` (async engines run
them through `run_sync`), with batch mode so the same scripts alter tables on SQLite."""

from alembic import context

from store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `smsmeter db upgrade` (store.migrate), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
