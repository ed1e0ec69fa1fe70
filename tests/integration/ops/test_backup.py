"""`smsmeter backup` / `smsmeter restore` as an operator runs them: a round trip on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from store.engine import create_engine
from store.schema import metadata
from store.schema.auth import audit_log
from tests.support import databases
from tests.support.service import run_cli


@pytest.fixture(params=databases.BACKENDS)
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty databases of one backend: the one backed up, and a fresh one to restore into."""
    if request.param == "sqlite":
        yield databases.sqlite_url(tmp_path / "a"), databases.sqlite_url(tmp_path / "b")
        return
    admin = databases.require_postgres()
    urls = (databases.create_postgres_database(admin), databases.create_postgres_database(admin))
    try:
        yield urls
    finally:
        for url in urls:
            databases.drop_postgres_database(admin, url)


def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table plus the schema revision, in a stable order."""

    async def read() -> dict[str, list[tuple[Any, ...]]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = {}
                for table in metadata.sorted_tables:
                    query = select(table).order_by(*table.primary_key.columns)
                    rows[table.name] = [tuple(r) for r in (await conn.execute(query)).all()]
                version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
                rows["alembic_version"] = [tuple(r) for r in version]
                return rows
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _execute(url: str, sql: str) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(run())


def _audit(url: str) -> list[tuple[Any, ...]]:
    async def read() -> list[tuple[Any, ...]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                query = select(audit_log.c.actor, audit_log.c.action, audit_log.c.before, audit_log.c.after).where(
                    audit_log.c.action.like("database.%")
                )
                return [tuple(r) for r in (await conn.execute(query.order_by(audit_log.c.id))).all()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _without_audit(snapshot: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows for name, rows in snapshot.items() if name != "audit_log"}


def test_backup_and_restore_round_trip(tmp_path: Path, two_databases: tuple[str, str]) -> None:
    source, fresh = two_databases
    env = {"SMSMETER_DATABASE_URL": source}
    loaded = run_cli(["demo"], tmp_path, env)
    assert loaded.returncode == 0, loaded.stderr
    before = _snapshot(source)
    assert sum(len(rows) for rows in before.values()) > 10  # the demo wrote subscribers, meters, keys, ...

    archive = tmp_path / "backups" / "smsmeter.dump"
    made = run_cli(["backup", "--operator", "alice", str(archive)], tmp_path, env)
    assert made.returncode == 0, made.stderr
    assert "backup written" in made.stdout
    assert "master key is not in the backup" in made.stderr
    assert archive.stat().st_size > 0
    assert not archive.with_name(archive.name + ".partial").exists()
    [(actor, action, _, after)] = _audit(source)  # the backup's row comes after the copy
    assert (actor, action) == ("alice", "database.backup")
    assert after["file"] == str(archive)
    assert after["size_bytes"] == archive.stat().st_size

    # Damage the source after the backup: the restore must bring back exactly what was backed up.
    _execute(source, "DELETE FROM meter_keys")
    refused = run_cli(["restore", str(archive)], tmp_path, env)
    assert refused.returncode == 1
    assert "not empty" in refused.stderr
    restored = run_cli(["restore", "--replace", str(archive)], tmp_path, env)
    assert restored.returncode == 0, restored.stderr
    after_restore = _snapshot(source)
    assert _without_audit(after_restore) == _without_audit(before)
    assert after_restore["audit_log"][: len(before["audit_log"])] == before["audit_log"]
    [(actor, action, replaced, after)] = _audit(source)  # the backup's own row is not in the backup
    assert action == "database.restore"
    assert actor.startswith("cli:")
    assert replaced == {"revision": before["alembic_version"][0][0]}
    assert after["revision"] == before["alembic_version"][0][0]

    # Into a brand-new database (the disaster case): identical, and the schema is current.
    into_fresh = run_cli(["restore", str(archive)], tmp_path, {"SMSMETER_DATABASE_URL": fresh})
    assert into_fresh.returncode == 0, into_fresh.stderr
    assert _without_audit(_snapshot(fresh)) == _without_audit(before)
    [(_, action, replaced, _)] = _audit(fresh)
    assert (action, replaced) == ("database.restore", {"revision": None})
    current = run_cli(["db", "current"], tmp_path, {"SMSMETER_DATABASE_URL": fresh})
    assert current.stdout.strip() == before["alembic_version"][0][0]


def test_restore_refuses_a_file_that_is_not_a_backup_of_this_kind(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a database\n")
    env = {"SMSMETER_DATABASE_URL": databases.sqlite_url(tmp_path)}
    result = run_cli(["restore", str(bogus)], tmp_path, env)
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"smsmeter: restore failed: {bogus} is not a sqlite backup; the configured "
        "database is sqlite, not PostgreSQL (pg_dump custom format)"
    )
    missing = run_cli(["restore", str(tmp_path / "none.dump")], tmp_path, env)
    assert missing.returncode == 1
    assert "no backup at" in missing.stderr
