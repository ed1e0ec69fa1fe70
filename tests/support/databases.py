"""Throwaway databases for the tests: a SQLite file, or a PostgreSQL database created and dropped per run.

PostgreSQL comes from SMSMETER_TEST_POSTGRES_URL, else 127.0.0.1:5432 when it answers. Without it the
PostgreSQL cases skip with a reason — except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from store.schema import metadata

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
KEEP_ROWS = {"roles", "alembic_version"}  # seeded by the migrations


def postgres_admin_url() -> str:
    return os.environ.get("SMSMETER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def require_postgres() -> str:
    """The admin URL of a reachable PostgreSQL, or skip (fail under CI=true)."""
    url = postgres_admin_url()

    async def probe() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = f"PostgreSQL not reachable at {make_url(url).render_as_string()}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires PostgreSQL: {reason}")
        pytest.skip(reason)
    return url


def create_postgres_database(admin_url: str) -> str:
    """Create an empty database; return its SQLAlchemy asyncpg URL."""
    name = f"smsmeter_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return make_url(admin_url).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)


def drop_postgres_database(admin_url: str, url: str) -> None:
    name = make_url(url).database

    async def drop() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / f'smsmeter-{uuid.uuid4().hex[:8]}.db'}"


async def empty_all_tables(engine: AsyncEngine) -> None:
    """Delete every row the tests wrote, keeping what the migrations seeded."""
    tables = [t for t in reversed(metadata.sorted_tables) if t.name not in KEEP_ROWS]
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            await conn.execute(text("PRAGMA foreign_keys=OFF"))
            for table in tables:
                await conn.execute(delete(table))
            await conn.execute(text("PRAGMA foreign_keys=ON"))
