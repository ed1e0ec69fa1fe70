"""Shared fixtures: databases on both backends, migrated once per run and emptied after every test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from store import migrate
from store.engine import create_engine
from store.uow import UnitOfWork
from tests.support import databases


def _new_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend == "postgresql":
        admin = databases.require_postgres()
        url = databases.create_postgres_database(admin)
        try:
            yield url
        finally:
            databases.drop_postgres_database(admin, url)
    else:
        yield databases.sqlite_url(tmp_path_factory.mktemp("db"))


def _migrated(url: str) -> str:
    async def up() -> None:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(up())
    return url


@pytest.fixture(scope="session", params=databases.BACKENDS)
def migrated_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database on each backend, migrated to the latest revision once for the whole run."""
    for url in _new_database(request.param, tmp_path_factory):
        yield _migrated(url)


@pytest.fixture(params=databases.BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A brand-new empty database on each backend (no migrations run), dropped afterwards."""
    yield from _new_database(request.param, tmp_path_factory)


@pytest.fixture
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database only (for what only PostgreSQL does, e.g. SKIP LOCKED)."""
    for url in _new_database("postgresql", tmp_path_factory):
        yield _migrated(url)


@pytest.fixture
async def engine(migrated_db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database (both backends); every row written is removed after the test."""
    eng = create_engine(migrated_db_url)
    try:
        yield eng
    finally:
        await databases.empty_all_tables(eng)
        await eng.dispose()


@pytest.fixture
def uow(engine: AsyncEngine) -> UnitOfWork:
    return UnitOfWork(engine)


@pytest.fixture
def empty_db_url_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A brand-new empty PostgreSQL database, dropped afterwards."""
    yield from _new_database("postgresql", tmp_path_factory)
