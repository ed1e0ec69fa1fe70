"""Statements built once, for the paths that run many times a second.

Building a SQLAlchemy statement (select(...).where(...), its cache key) costs more CPU than executing it:
measured on PostgreSQL, a select with a join and an `= ANY(array)` cost 693 µs per execute built anew
and 281 µs built once (`bench/payments` figures in docs/architecture.md). The hot paths therefore build
their statements once per dialect — in a function under `per_dialect`, called with the connection, whose
builder takes `postgres: bool` — with their values as bound parameters, and execute them with a parameter
dictionary. The helpers here take the database as a connection, an engine, its dialect name or that flag, so
no caller outside store asks which database it talks to.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, TextClause, any_, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")
Database = AsyncConnection | AsyncEngine | str | bool  # a connection, an engine, a dialect name or `postgres`


def _postgres(db: Database) -> bool:
    if isinstance(db, bool):
        return db
    if isinstance(db, str):
        return db == "postgresql"
    return db.dialect.name == "postgresql"


def per_dialect(build: Callable[[bool], T]) -> Callable[[Database], T]:
    """`build(postgres)` once per database, then the same object for every call with a connection to it: the
    statement builders of the hot paths, called as `query(conn)`."""
    built: dict[bool, T] = {}

    @functools.wraps(build)
    def for_database(db: Database) -> T:
        postgres = _postgres(db)
        if postgres not in built:
            built[postgres] = build(postgres)
        return built[postgres]

    return for_database


def among(column: Any, values: Sequence[Any], db: Database) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)`: one parameter instead of one per value
    (a thousand-value IN list costs more to build than to run)."""
    if _postgres(db):
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(list(values))  # type: ignore[no-any-return]


def among_param(column: Any, name: str, db: Database) -> ColumnElement[bool]:
    """`column IN (:name)` for a statement built once, the list bound at execution as `name`: on PostgreSQL
    `column = ANY(:name)`, one array parameter and one statement text whatever the number of values; on
    SQLite an expanding IN."""
    if _postgres(db):
        return column == any_(bindparam(name, type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]


def _insert(table: Any, db: Database) -> Any:
    return (postgresql.insert if _postgres(db) else sqlite.insert)(table)


def insert_ignoring_duplicates(table: Any, index_elements: list[str], db: Database) -> Any:
    """`INSERT … ON CONFLICT (index_elements) DO NOTHING` on either database."""
    return _insert(table, db).on_conflict_do_nothing(index_elements=index_elements)


def insert_or_update(table: Any, index_elements: list[str], columns: Sequence[str], db: Database) -> Any:
    """`INSERT … ON CONFLICT (index_elements) DO UPDATE SET column = excluded.column` for each of `columns`,
    on either database."""
    stmt = _insert(table, db)
    return stmt.on_conflict_do_update(index_elements=index_elements, set_={c: stmt.excluded[c] for c in columns})


@functools.lru_cache(maxsize=512)
def cached_text(sql: str) -> TextClause:
    """`text(sql)`, one object per distinct statement (its bound parameters parsed once, its cache key
    memoised)."""
    return text(sql)
