"""Migrations are the only way the schema is made: they run both ways on both databases and produce
exactly the tables the code declares."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

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


async def test_the_gateway_counters_move_to_their_table_and_back(empty_db_url: str) -> None:
    """0021: each meter's next counter and replay window are copied to `meter_counters`, and back on downgrade."""
    engine = create_engine(empty_db_url)
    meter = "INSERT INTO meters (id, code, msisdn, installed_at, next_counter, in_highest, in_bitmap) VALUES"
    try:
        await migrate.upgrade(engine, "0020")
        async with engine.begin() as conn:
            await conn.execute(text(f"{meter} (1, 'M1', '1', '2026-01-01 00:00:00+00', 41, 17, 5)"))
            await conn.execute(text(f"{meter} (2, 'M2', '2', '2026-01-01 00:00:00+00', 1, 0, 0)"))
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            rows = await conn.execute(text("SELECT * FROM meter_counters ORDER BY meter_id"))
            assert [tuple(r) for r in rows] == [(1, 41, 17, 5), (2, 1, 0, 0)]
            await conn.execute(text("UPDATE meter_counters SET next_counter = 42 WHERE meter_id = 1"))
        await migrate.downgrade(engine, "0020")
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, next_counter, in_highest, in_bitmap FROM meters ORDER BY id"))
            assert [tuple(r) for r in rows] == [(1, 42, 17, 5), (2, 1, 0, 0)]
    finally:
        await engine.dispose()
