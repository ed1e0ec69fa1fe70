"""The tables that grow for years: split by month on PostgreSQL (the months ahead created by `ensure`, the rows
of before partitioning kept by the migration), and one retention policy on both databases — old rows archived
to files, then their partitions dropped (PostgreSQL) or the rows deleted in batches (SQLite, and what no
partition holds)."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from store import migrate, partitions
from store.engine import create_engine
from store.retention import RetentionPolicy, apply_retention
from store.schema import auth, commands, payments
from tests.support.service import run_cli

NOW = datetime(2026, 12, 3, 10, tzinfo=UTC)


def _at(month: int, day: int = 10) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


async def _audit(engine: AsyncEngine, *months: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(auth.audit_log),
            [{"at": _at(m), "actor_kind": "system", "actor": "test", "action": f"month {m}"} for m in months],
        )


def _files(archive: Path, pattern: str) -> list[Path]:
    return sorted(archive.glob(pattern))


def _archived(archive: Path) -> list[dict[str, object]]:
    rows = []
    for path in sorted(archive.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows += [json.loads(line) for line in f]
    return rows


async def test_old_months_are_archived_then_removed_on_both_databases(engine: AsyncEngine, tmp_path: Path) -> None:
    async with engine.begin() as conn:  # partitions for January to March (none on SQLite)
        created = await partitions.ensure(conn, _at(1), months_ahead=2)
    postgres = engine.dialect.name == "postgresql"
    assert ("audit_log_p202601" in created) is postgres
    await _audit(engine, 1, 1, 1, 2, 2, 5, 11)  # May's row: no partition of its own (the default one on PostgreSQL)
    async with engine.begin() as conn:
        await conn.execute(
            insert(payments.webhook_events),
            [
                {
                    "provider": "stripe",
                    "event_id": f"evt_{n}",
                    "event_type": "x",
                    "received_at": _at(m),
                    "outcome": "ok",
                }
                for n, m in enumerate((1, 1, 11))
            ],
        )
    policy = RetentionPolicy({"audit_log": 6, "webhook_events": 1, "wrong_sms": 0}, tmp_path, batch_rows=2)

    report = await apply_retention(engine, policy, NOW)

    async with engine.connect() as conn:
        kept = (await conn.scalars(select(auth.audit_log.c.action).order_by(auth.audit_log.c.id))).all()
        events = (await conn.scalars(select(payments.webhook_events.c.event_id))).all()
        names = [p.name for p in await partitions.partitions(conn, "audit_log")]
    assert kept == ["month 11"]  # before June 1 (six months before December) goes
    assert events == ["evt_2"]
    assert report.rows_removed == {"audit_log": 6, "webhook_events": 2}
    archived = _archived(tmp_path)
    assert sorted(r["action"] for r in archived if "action" in r) == ["month 1"] * 3 + ["month 2"] * 2 + ["month 5"]
    assert sorted(r["event_id"] for r in archived if "event_id" in r) == ["evt_0", "evt_1"]
    assert all(str(r.get("at", r.get("received_at"))).startswith("2026-0") for r in archived)
    if postgres:  # whole months dropped as partitions; May's row deleted from the default partition
        assert {"audit_log_p202601", "audit_log_p202602", "audit_log_p202603"} <= set(report.partitions_dropped)
        assert "audit_log_p202601" not in names
        assert (tmp_path / "audit_log_p202601.jsonl.gz").exists()
    else:
        assert report.partitions_dropped == []
        assert len(_files(tmp_path, "audit_log-*.jsonl.gz")) == 3  # three batches of two

    again = await apply_retention(engine, policy, NOW)  # nothing left to do
    assert again.rows_removed == {"audit_log": 0, "webhook_events": 0}


async def test_ensure_creates_the_months_ahead_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await partitions.ensure(conn, datetime(2031, 5, 20, tzinfo=UTC), months_ahead=1)
        second = await partitions.ensure(conn, datetime(2031, 5, 20, tzinfo=UTC), months_ahead=1)
    if engine.dialect.name != "postgresql":
        assert first == second == []
        return
    assert sorted(first) == sorted(
        f"{t}_p2031{m}" for t in ("command_history", "wrong_sms", "audit_log", "readings") for m in ("05", "06")
    )
    assert second == []
    async with engine.begin() as conn:  # leave the shared database as it was
        for name in first:
            assert await partitions.drop(conn, name.rsplit("_p", 1)[0], name)
        assert not await partitions.drop(conn, "audit_log", "audit_log_p203105")  # gone already: nothing to do


async def test_a_month_whose_rows_went_to_the_default_partition_takes_them_over(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        return
    async with engine.begin() as conn:
        await conn.execute(
            insert(auth.audit_log),
            [{"at": datetime(2032, 2, 3, tzinfo=UTC), "actor_kind": "system", "actor": "t", "action": "early"}],
        )
        created = await partitions.ensure(conn, datetime(2032, 2, 1, tzinfo=UTC), months_ahead=0)
        where = await conn.scalar(text("SELECT tableoid::regclass::text FROM audit_log WHERE action = 'early'"))
        for name in created:
            await partitions.drop(conn, name.rsplit("_p", 1)[0], name)
    assert "audit_log_p203202" in created
    assert where == "audit_log_p203202"


async def test_the_migration_keeps_the_rows_of_before_partitioning(empty_db_url_postgres: str) -> None:
    engine = create_engine(empty_db_url_postgres)
    try:
        await migrate.upgrade(engine, "0016")
        await _audit(engine, 3, 4)
        wrong = {"source": "1", "destination": "2", "body": b"x", "reason": "malformed", "received_at": _at(4)}
        async with engine.begin() as conn:  # a table with a foreign key (its meter)
            await conn.execute(insert(commands.wrong_sms), [wrong])
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(insert(commands.wrong_sms), [{**wrong, "received_at": _at(12)}])
            assert await conn.scalar(select(func.count()).select_from(commands.wrong_sms)) == 2
        await _audit(engine, 12)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT id, action, tableoid::regclass::text FROM audit_log ORDER BY id"))
            ).all()
            names = [p.name for p in await partitions.partitions(conn, "audit_log")]
        assert [(r[0], r[1]) for r in rows] == [(1, "month 3"), (2, "month 4"), (3, "month 12")]
        assert rows[0][2] == rows[1][2] == "audit_log_before"
        assert "audit_log_pdefault" in names
        await migrate.downgrade(engine, "0016")
        async with engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(auth.audit_log))
        assert count == 3
        await _audit(engine, 12)  # the ids go on
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def test_the_partitions_and_retention_commands(empty_db_url: str, tmp_path: Path) -> None:
    env = {"SMSMETER_DATABASE_URL": empty_db_url, "SMSMETER_DATA_DIR": str(tmp_path)}
    ensured = run_cli(["partitions", "ensure", "--months-ahead", "5"], tmp_path, env, timeout_s=120)
    assert ensured.returncode == 0, ensured.stderr
    created = json.loads(ensured.stdout.splitlines()[-1])["partitions_created"]
    postgres = empty_db_url.startswith("postgresql")
    assert len(created) == (8 if postgres else 0)  # months 4 and 5 ahead of the three the migration made

    async def old_wrong_sms() -> None:
        engine = create_engine(empty_db_url)
        try:
            async with engine.begin() as conn:
                row = {"source": "1", "destination": "2", "body": b"\x01", "reason": "malformed"}
                await conn.execute(
                    insert(commands.wrong_sms), [{**row, "received_at": datetime(2020, 1, 5, tzinfo=UTC)}]
                )
        finally:
            await engine.dispose()

    asyncio.run(old_wrong_sms())
    done = run_cli(["retention", "run"], tmp_path, {**env, "SMSMETER_RETENTION_WRONG_SMS_MONTHS": "1"}, timeout_s=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["rows_removed"]["wrong_sms"] == 1
    (archived,) = _archived(tmp_path / "archive")
    assert archived["body"] == "01"


async def test_readings_are_split_by_month_and_still_stored_once(empty_db_url_postgres: str) -> None:
    """0028: the readings of before stay (`readings_before`); a new month's go to its partition; the unique key
    (meter, register, read_at) still makes a reading sent twice a no-op, as the gateway's write relies on."""
    from store.bulk import OnConflict, insert_rows
    from store.schema import registry

    engine = create_engine(empty_db_url_postgres)
    try:
        await migrate.upgrade(engine, "0027")
        async with engine.begin() as conn:
            meter_id = (
                await conn.execute(
                    insert(registry.meters).values(code="8800" + "0" * 16, msisdn="37369000001", installed_at=_at(1))
                )
            ).inserted_primary_key[0]
            reading = {"meter_id": meter_id, "register": "import_wh", "value": 1000, "received_at": _at(3)}
            await conn.execute(insert(commands.readings), [{**reading, "read_at": _at(3)}])
        await migrate.upgrade(engine)
        once = OnConflict(("meter_id", "register", "read_at"))
        rows = [{**reading, "read_at": _at(12), "value": 2000, "source": "meter_report", "status": "ok"}]
        async with engine.begin() as conn:
            await insert_rows(conn, commands.readings, rows, once)
            await insert_rows(conn, commands.readings, rows, once)  # the same report again: nothing
            where = (
                await conn.execute(text("SELECT value, tableoid::regclass::text FROM readings ORDER BY read_at"))
            ).all()
        assert [tuple(r) for r in where] == [(1000, "readings_before"), (2000, "readings_p202612")]
        await migrate.downgrade(engine, "0027")
        async with engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(commands.readings)) == 2
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
