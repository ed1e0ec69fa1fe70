"""Many rows in one statement on PostgreSQL: `INSERT … SELECT * FROM unnest(arrays)` and
`UPDATE … FROM unnest(arrays)`, one array per column.

An executemany runs one statement per row on the server; a batch of receipts or acknowledgements that
arrive together should cost one statement (field notes: ~350 commands/s with a statement per step, some
27,000/s batched this way). SQLite has no arrays: there the callers keep their executemany, which is
cheap in process.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, Table, Update, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.sql import cached_text

_CHUNK = 1000  # ids a SQLite statement names at most


def _array_type(conn: AsyncConnection, table: Table, column: str, types: Mapping[str, str]) -> str:
    if column in types:
        return types[column]
    key = (table.name, column, conn.dialect.name)
    if key not in _COLUMN_TYPES:
        _COLUMN_TYPES[key] = str(table.c[column].type.compile(dialect=conn.dialect))
    return _COLUMN_TYPES[key]


_COLUMN_TYPES: dict[tuple[str, str, str], str] = {}  # a column's type as the database names it


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(rows[0])


def _arrays(rows: Sequence[Mapping[str, Any]], columns: list[str]) -> dict[str, list[Any]]:
    return {f"a_{c}": [r[c] for r in rows] for c in columns}


async def insert_many(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]], *, on_conflict: str = ""
) -> None:
    """Insert `rows` (all with the same keys, values as the column stores them) in one statement."""
    if not rows:
        return
    columns = _columns(rows)
    unnest = ", ".join(f"CAST(:a_{c} AS {_array_type(conn, table, c, {})}[])" for c in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({unnest}) {on_conflict}"
    await conn.execute(cached_text(sql), _arrays(rows, columns))


async def update_many(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    assignments: str,
    *,
    key: str = "id",
    where: str = "",
    types: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    also_from: str = "",
    returning: str = "",
) -> list[Any]:
    """`UPDATE table AS t SET <assignments> FROM unnest(...) AS v(...) WHERE t.<key> = v.<key> <where>`.
    `assignments` and `where` name the row values as `v.<name>` and the table as `t`; `types` gives the
    PostgreSQL type of a value that is not a column of `table`; `params` are plain bound parameters;
    `also_from` adds tables to the FROM list (e.g. `, table AS old` to return a row's values before the
    update); `returning` is a RETURNING list, whose rows are returned."""
    if not rows:
        return []
    columns = _columns(rows)
    unnest = ", ".join(f"CAST(:a_{c} AS {_array_type(conn, table, c, types or {})}[])" for c in columns)
    sql = (
        f"UPDATE {table.name} AS t SET {assignments} FROM unnest({unnest}) AS v({', '.join(columns)}){also_from} "
        f"WHERE t.{key} = v.{key} {where}"
    )
    if returning:
        sql += f" RETURNING {returning}"
    result = await conn.execute(cached_text(sql), {**_arrays(rows, columns), **(params or {})})
    return list(result) if returning else []


async def add_in_id_order(
    conn: AsyncConnection, table: Table, column: str, amounts: Mapping[int, int], returning: Sequence[str] = ()
) -> list[Any]:
    """`column += amounts[id]` for each row by id, the rows locked in id order (two of these never deadlock);
    returns each row's id, its new `column` value and the `returning` columns. The rows that do not exist are
    missing from the result.

    PostgreSQL: one statement. The rows are locked by a materialised `SELECT … ORDER BY id FOR NO KEY
    UPDATE`; the UPDATE reaches a row only through it, so only after it is locked, and computes from the
    row's latest committed version. SQLite (one writer, no row locks): an executemany in id order, then a
    select."""
    if not amounts:
        return []
    ids = sorted(amounts)
    if conn.dialect.name != "postgresql":
        await conn.execute(_add_by_id(table, column), [{"a_id": i, "a_n": amounts[i]} for i in ids])
        read = _read_by_ids(table, column, tuple(returning))
        rows: list[Any] = []
        for start in range(0, len(ids), _CHUNK):
            rows += await conn.execute(read, {"ids": ids[start : start + _CHUNK]})
        return rows
    extra = "".join(f", t.{c}" for c in returning)
    sql = (
        f"WITH locked AS MATERIALIZED (SELECT id FROM {table.name} WHERE id = ANY(CAST(:ids AS BIGINT[])) "
        f"ORDER BY id FOR NO KEY UPDATE) "
        f"UPDATE {table.name} AS t SET {column} = t.{column} + v.n "
        f"FROM locked JOIN unnest(CAST(:ids AS BIGINT[]), CAST(:ns AS BIGINT[])) AS v(id, n) ON v.id = locked.id "
        f"WHERE t.id = locked.id RETURNING t.id, t.{column}{extra}"
    )
    return list(await conn.execute(cached_text(sql), {"ids": ids, "ns": [amounts[i] for i in ids]}))


@functools.cache
def _add_by_id(table: Table, column: str) -> Update:
    return update(table).where(table.c.id == bindparam("a_id")).values({column: table.c[column] + bindparam("a_n")})


@functools.cache
def _read_by_ids(table: Table, column: str, returning: tuple[str, ...]) -> Select[Any]:
    wanted = [table.c.id, table.c[column], *(table.c[c] for c in returning)]
    return select(*wanted).where(table.c.id.in_(bindparam("ids", expanding=True)))
