"""Migrations are the only way the schema is made: they run both ways on both databases and produce
exactly the tables the code declares."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from store import migrate
from store.engine import create_engine
from store.partitions import is_partition
from store.schema import metadata


def _declared(name: str | None, type_: str, _parent: object) -> bool:
    """What the comparison looks at: the declared tables, not PostgreSQL's month partitions of them."""
    return not (type_ == "table" and name is not None and is_partition(name))


async def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    try:
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert set(tables) <= {"alembic_version"}
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        await migrate.upgrade(engine)  # idempotent: serve runs it at every start
    finally:
        await engine.dispose()


async def test_migrated_schema_matches_the_declared_tables(migrated_db_url: str) -> None:
    engine = create_engine(migrated_db_url)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True, "include_name": _declared}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diffs == []
