"""Statements built once, for the paths that run many times a second.

Building a SQLAlchemy statement (select(...).where(...), its cache key) costs more CPU than executing it:
measured on PostgreSQL, a select with a join and an `= ANY(array)` cost 693 µs per execute built anew
and 281 µs built once (`bench/payments` figures in docs/architecture.md). The hot paths therefore build
their statements once per dialect — in a function under `functools.cache` taking `postgres: bool` — with
their values as bound parameters, and execute them with a parameter dictionary.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, TextClause, any_, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY


def among(column: Any, values: Sequence[Any], postgres: bool) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)`: one parameter instead of one per value
    (a thousand-value IN list costs more to build than to run)."""
    if postgres:
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(list(values))  # type: ignore[no-any-return]


def among_param(column: Any, name: str, postgres: bool) -> ColumnElement[bool]:
    """`column IN (:name)` for a statement built once, the list bound at execution as `name`: on PostgreSQL
    `column = ANY(:name)`, one array parameter and one statement text whatever the number of values; on
    SQLite an expanding IN."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]


def insert_ignoring_duplicates(table: Any, index_elements: list[str], dialect: str) -> Any:
    """`INSERT … ON CONFLICT (index_elements) DO NOTHING` on either database; `dialect` is the connection's
    `dialect.name`, so no caller branches on it."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=index_elements)


@functools.lru_cache(maxsize=512)
def cached_text(sql: str) -> TextClause:
    """`text(sql)`, one object per distinct statement (its bound parameters parsed once, its cache key
    memoised)."""
    return text(sql)
