"""Set-based statements for the hot paths, one helper each for both databases.

A batch of receipts or acknowledgements that arrive together should cost one statement, not one per row
(field notes: ~350 commands/s with a statement per step, some 27,000/s batched). The difference between
the databases lives here and nowhere else:

- PostgreSQL: one statement over arrays, one array per value — `INSERT … SELECT * FROM unnest(…)` and
  `UPDATE … FROM unnest(…) AS v(…)`; the rows to change are locked in id order first (`lock_in_id_order`),
  so the self-join that returns a row's values before the update reads them as they were.
- SQLite (one writer, in process, no arrays): an executemany of the same statement, the row values bound
  as parameters; where values before or after are wanted, a read first and a statement per row.

The statements are SQLAlchemy Core, built once per shape and dialect. A caller writes its SET and WHERE
clauses against the row values `v` (`Values`) and the table, e.g. `{"state": v.c.state}` and
`[table.c.state == v.c.was]`; the same expression reads a column of the unnested arrays on PostgreSQL and
a bound parameter on SQLite. State conditions come from the caller (the gateway's `predecessors()`), as
plain values: this package knows no domain rule.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    column,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeEngine

from store.sql import among_param

CHUNK = 1000  # rows (or ids) one statement names at most


def is_postgres(conn: AsyncConnection | AsyncEngine) -> bool:
    return conn.dialect.name == "postgresql"


class Values:
    """The per-row values of a set-based statement, as `v.c.<name>`: a column of `unnest(…) AS v(…)` on
    PostgreSQL, a bound parameter of an executemany on SQLite."""

    def __init__(self, columns: Mapping[str, ColumnElement[Any]]) -> None:
        self.c = _Columns(columns)


class _Columns:
    def __init__(self, columns: Mapping[str, ColumnElement[Any]]) -> None:
        self._columns = dict(columns)

    def __getattr__(self, name: str) -> ColumnElement[Any]:
        try:
            return self._columns[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> ColumnElement[Any]:
        return self._columns[name]


def one_of(col: ColumnElement[Any], values: Collection[str]) -> ColumnElement[bool]:
    """`col` is one of `values` (e.g. `gateway.states.predecessors(target)`), written as equalities rather
    than an IN list, so it also holds inside an executemany (which cannot expand a list)."""
    return or_(*(col == v for v in sorted(values)))


@dataclass(eq=False)
class RowUpdate:
    """`UPDATE table SET <set_> WHERE table.<key> = v.<key> AND <where>` for every row of values.

    `values` names each per-row value and its type (None: the type of the table's column of that name);
    `set_` and `where` build the clauses from the table and the row values; `returning` names columns
    read after the update, `before` columns read as they were before it. Values that are the same for
    every row go in as bound parameters (`bindparam("now")`) and are passed to `update_rows`."""

    table: Table
    values: Mapping[str, TypeEngine[Any] | None]
    set_: Callable[[Table, Values], Mapping[str, Any]]
    where: Callable[[Table, Values], Sequence[ColumnElement[bool]]] = lambda _t, _v: ()
    key: str = "id"
    returning: Sequence[str] = ()
    before: Sequence[str] = ()
    prefix: str = "a"  # of its parameters' names: statements run together (`update_rows_together`) differ in it
    _built: dict[str, Update] = field(default_factory=dict, repr=False)

    def _type(self, name: str) -> TypeEngine[Any]:
        given = self.values[name]
        return given if given is not None else self.table.c[name].type

    def statement(self, postgres: bool) -> Update:
        key = "postgresql" if postgres else "sqlite"
        if key not in self._built:
            self._built[key] = self._build(postgres)
        return self._built[key]

    def _build(self, postgres: bool) -> Update:
        t = self.table
        names = list(self.values)
        if postgres:
            arrays = [bindparam(f"{self.prefix}_{n}", type_=ARRAY(self._type(n))) for n in names]
            derived = func.unnest(*arrays).table_valued(*(column(n, self._type(n)) for n in names)).render_derived("v")
            v = Values({n: derived.c[n] for n in names})
        else:
            v = Values({n: bindparam(f"{self.prefix}_{n}", type_=self._type(n)) for n in names})
        stmt = update(t).where(t.c[self.key] == v.c[self.key], *self.where(t, v)).values(dict(self.set_(t, v)))
        returned: list[Any] = [t.c[self.key]]
        if postgres and self.before:
            old = t.alias("old")
            stmt = stmt.where(old.c[self.key] == t.c[self.key])
            returned += [old.c[c] for c in self.before]
        returned += [t.c[c] for c in self.returning]
        if postgres or self.returning or self.before:
            stmt = stmt.returning(*returned)
        return stmt


async def update_rows(
    conn: AsyncConnection, spec: RowUpdate, rows: Sequence[Mapping[str, Any]], **params: Any
) -> list[tuple[Any, ...]]:
    """Run `spec` for `rows` (each a mapping of every name in `spec.values`); returns, for each row that
    was updated, `(key, *before, *returning)`. Callers lock the rows first (`lock_in_id_order`) when
    they want `before`."""
    if not rows:
        return []
    names = list(spec.values)
    if is_postgres(conn):  # one statement, however many rows: an array is one parameter
        return [tuple(r) for r in await conn.execute(spec.statement(True), {**_arrays(spec, rows), **params})]
    bound = [{**{f"{spec.prefix}_{n}": r[n] for n in names}, **params} for r in rows]
    stmt = spec.statement(False)
    if not spec.returning and not spec.before:
        await conn.execute(stmt, bound)
        return []
    before: dict[Any, tuple[Any, ...]] = {}
    if spec.before:
        keys = sorted({r[spec.key] for r in rows})
        read = _read_by_keys(spec.table, spec.key, tuple(spec.before))
        for start in range(0, len(keys), CHUNK):
            for r in await conn.execute(read, {"keys": keys[start : start + CHUNK]}):
                before[r[0]] = tuple(r[1:])
    changed: list[tuple[Any, ...]] = []
    for b in bound:  # one at a time: SQLite returns nothing from an executemany UPDATE
        for r in await conn.execute(stmt, b):
            changed.append((r[0], *before.get(r[0], (None,) * len(spec.before)), *r[1:]))
    return changed


def _arrays(spec: RowUpdate, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {f"{spec.prefix}_{n}": [r[n] for r in rows] for n in spec.values}


async def update_rows_together(
    conn: AsyncConnection, parts: Sequence[tuple[RowUpdate, Sequence[Mapping[str, Any]]]], **params: Any
) -> None:
    """`update_rows` for each (spec, rows) of `parts`, nothing read back, in one round trip where the database
    allows: on PostgreSQL one statement (`WITH u0 AS (UPDATE …), u1 AS (UPDATE …) UPDATE …`, the specs' prefixes
    differing), on SQLite an executemany each, in order. The parts must not change the same rows."""
    parts = [(spec, rows) for spec, rows in parts if rows]
    if len(parts) <= 1 or not is_postgres(conn):
        for spec, rows in parts:
            await update_rows(conn, spec, rows, **params)
        return
    arrays: dict[str, list[Any]] = {}
    for spec, rows in parts:
        arrays.update(_arrays(spec, rows))
    await conn.execute(_together(tuple(spec for spec, _ in parts)), {**arrays, **params})


@functools.cache
def _together(specs: tuple[RowUpdate, ...]) -> Update:
    stmt = specs[-1].statement(True)
    for i, spec in enumerate(specs[:-1]):
        stmt = stmt.add_cte(spec.statement(True).cte(f"u{i}"))
    return stmt


@functools.cache
def _read_by_keys(table: Table, key: str, names: tuple[str, ...]) -> Select[Any]:
    return select(table.c[key], *(table.c[n] for n in names)).where(table.c[key].in_(bindparam("keys", expanding=True)))


async def select_among(
    conn: AsyncConnection,
    columns: Sequence[ColumnElement[Any]],
    key: ColumnElement[Any] | tuple[ColumnElement[Any], ...],
    values: Collection[Any],
    *,
    where: tuple[ColumnElement[bool], ...] = (),
    order_by: tuple[ColumnElement[Any], ...] = (),
    lock_of: Table | None = None,
    from_: FromClause | None = None,
) -> list[Any]:
    """`SELECT columns WHERE key IN (values) AND where… ORDER BY order_by` for any number of values; `key`
    one column (values plain) or a tuple of columns (values tuples). PostgreSQL: one array parameter per
    key column a chunk (`= ANY(:keys)`, `(a, b) IN (SELECT * FROM unnest(…))`), the rows of `lock_of`
    locked FOR NO KEY UPDATE (lock in id order: `order_by` the id); SQLite: an expanding IN, no lock (one
    writer). `where` and `order_by` must be built once (module constants): the statement is cached."""
    if not values:
        return []
    ordered = sorted(values)
    postgres = is_postgres(conn)
    keys = key if isinstance(key, tuple) else (key,)
    stmt = _select_among(tuple(columns), keys, where, order_by, lock_of, from_, postgres)
    rows: list[Any] = []
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        if postgres and len(keys) > 1:
            params = {f"k{i}": [v[i] for v in chunk] for i in range(len(keys))}
        else:
            params = {"keys": chunk}
        rows += await conn.execute(stmt, params)
    return rows


@functools.cache
def _select_among(
    columns: tuple[ColumnElement[Any], ...],
    keys: tuple[ColumnElement[Any], ...],
    where: tuple[ColumnElement[bool], ...],
    order_by: tuple[ColumnElement[Any], ...],
    lock_of: Table | None,
    from_: FromClause | None,
    postgres: bool,
) -> Select[Any]:
    condition: ColumnElement[bool]
    if len(keys) == 1:
        condition = among_param(keys[0], "keys", postgres)
    elif postgres:
        arrays = [bindparam(f"k{i}", type_=ARRAY(k.type)) for i, k in enumerate(keys)]
        derived = func.unnest(*arrays).table_valued(*(column(f"k{i}", k.type) for i, k in enumerate(keys)))
        condition = tuple_(*keys).in_(select(*derived.render_derived("v").c))
    else:
        condition = tuple_(*keys).in_(bindparam("keys", expanding=True))
    stmt = select(*columns)
    if from_ is not None:
        stmt = stmt.select_from(from_)
    stmt = stmt.where(condition, *where).order_by(*order_by)
    if lock_of is not None:
        stmt = stmt.with_for_update(key_share=True, of=lock_of)  # SQLite renders no lock clause
    return stmt


def one_statement(engine: AsyncEngine) -> AsyncContextManager[AsyncConnection]:
    """A connection for one statement that is atomic on its own (a claim): on PostgreSQL in autocommit,
    without BEGIN and COMMIT round trips; on SQLite in a transaction of its own."""
    if not is_postgres(engine):
        return engine.begin()
    autocommit = _AUTOCOMMIT.get(engine)
    if autocommit is None:
        autocommit = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return autocommit.connect()


_AUTOCOMMIT: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class OnConflict:
    """What an insert does with a row whose `keys` exist already: nothing, or set `update` from the new row."""

    keys: tuple[str, ...]
    update: tuple[str, ...] = ()


async def insert_rows(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]], on_conflict: OnConflict | None = None
) -> None:
    """Insert `rows` (all with the same keys): one statement over arrays on PostgreSQL, an executemany on
    SQLite. The rows of one call must not repeat a conflict key when `on_conflict.update` is given
    (PostgreSQL refuses to update one row twice in a statement)."""
    if not rows:
        return
    columns = tuple(rows[0])
    postgres = is_postgres(conn)
    stmt = _insert_statement(table, columns, on_conflict, postgres)
    if not postgres:
        await conn.execute(stmt, list(rows))
        return
    await conn.execute(stmt, {f"a_{c}": [r[c] for r in rows] for c in columns})


@functools.cache
def _insert_statement(table: Table, columns: tuple[str, ...], on_conflict: OnConflict | None, postgres: bool) -> Insert:
    dialect_insert = postgresql.insert if postgres else sqlite.insert
    stmt: Any = dialect_insert(table)
    if postgres and columns:  # no columns: a statement whose values the caller adds
        arrays = [bindparam(f"a_{c}", type_=ARRAY(table.c[c].type)) for c in columns]
        derived = func.unnest(*arrays).table_valued(*(column(c, table.c[c].type) for c in columns)).render_derived("v")
        stmt = stmt.from_select(list(columns), select(*(derived.c[c] for c in columns)))
    if on_conflict is None:
        return stmt  # type: ignore[no-any-return]
    if not on_conflict.update:
        return stmt.on_conflict_do_nothing(index_elements=list(on_conflict.keys))  # type: ignore[no-any-return]
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(on_conflict.keys), set_={c: stmt.excluded[c] for c in on_conflict.update}
    )


def ignoring_duplicates(conn: AsyncConnection, table: Table, keys: Sequence[str]) -> Insert:
    """`INSERT … ON CONFLICT (keys) DO NOTHING` in the dialect of `conn`."""
    return _insert_statement(table, (), OnConflict(tuple(keys)), is_postgres(conn))


async def insert_new(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: tuple[str, ...],
    returning: tuple[str, ...],
) -> list[Any]:
    """Insert `rows` (all with the same keys), skipping those whose `keys` exist already (`INSERT … ON CONFLICT
    (keys) DO NOTHING`, in one statement a chunk on either database); returns the `returning` columns of the
    rows written — a claim: what is returned was new."""
    if not rows:
        return []
    return list(await conn.execute(_insert_new(table, keys, returning, is_postgres(conn)), list(rows)))


@functools.cache
def _insert_new(table: Table, keys: tuple[str, ...], returning: tuple[str, ...], postgres: bool) -> Insert:
    stmt = _insert_statement(table, (), OnConflict(keys), postgres)
    return stmt.returning(*(table.c[c] for c in returning))


@dataclass(frozen=True, eq=False)
class Follower:
    """Rows of `table` that follow each inserted row (e.g. a first history row): the values of `columns`
    computed by `values` from the new row (a CTE of the inserted rows on PostgreSQL, the table itself
    on SQLite), with plain bound parameters passed to `insert_returning`."""

    table: Table
    columns: tuple[str, ...]
    values: Callable[[Any], Sequence[ColumnElement[Any]]]


async def insert_returning(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    returning: tuple[str, ...],
    follower: Follower | None = None,
    **params: Any,
) -> list[Any]:
    """Insert `rows` (all with the same keys) and return the `returning` columns of each new row (in no
    particular order: callers match them by a unique key), writing a `follower` row for each.
    PostgreSQL: one statement a chunk (`WITH new AS (INSERT … SELECT * FROM unnest(…) RETURNING …),
    follow AS (INSERT … SELECT … FROM new) SELECT … FROM new`); SQLite: an executemany INSERT … RETURNING,
    then one INSERT … SELECT for the followers (`returning` must then hold "id")."""
    if not rows:
        return []
    columns = tuple(rows[0])
    postgres = is_postgres(conn)
    out: list[Any] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        if postgres:
            stmt = _insert_returning_postgres(table, columns, returning, follower)
            arrays = {f"a_{c}": [r[c] for r in chunk] for c in columns}
            out += await conn.execute(stmt, {**arrays, **params})
            continue
        result = await conn.execute(_insert_returning_sqlite(table, returning), list(chunk))
        new = list(result)
        out += new
        if follower is not None and new:
            ids = [r.id for r in new]
            await conn.execute(_followers_sqlite(table, follower), {"ids": ids, **params})
    return out


@functools.cache
def _insert_returning_postgres(
    table: Table, columns: tuple[str, ...], returning: tuple[str, ...], follower: Follower | None
) -> Select[Any]:
    arrays = [bindparam(f"a_{c}", type_=ARRAY(table.c[c].type)) for c in columns]
    derived = func.unnest(*arrays).table_valued(*(column(c, table.c[c].type) for c in columns)).render_derived("v")
    new = (
        postgresql.insert(table)
        .from_select(list(columns), select(*(derived.c[c] for c in columns)))
        .returning(*(table.c[c] for c in returning))
        .cte("new")
    )
    stmt = select(*(new.c[c] for c in returning))
    if follower is not None:
        follow = postgresql.insert(follower.table).from_select(list(follower.columns), select(*follower.values(new)))
        stmt = stmt.add_cte(follow.cte("follow"))
    return stmt


@functools.cache
def _insert_returning_sqlite(table: Table, returning: tuple[str, ...]) -> Insert:
    return sqlite.insert(table).returning(*(table.c[c] for c in returning), sort_by_parameter_order=True)


@functools.cache
def _followers_sqlite(table: Table, follower: Follower) -> Insert:
    values = select(*follower.values(table)).where(table.c.id.in_(bindparam("ids", expanding=True)))
    return sqlite.insert(follower.table).from_select(list(follower.columns), values)


async def lock_in_id_order(conn: AsyncConnection, table: Table, ids: Collection[int]) -> None:
    """Lock the rows of `ids`, in id order, before changing any (FOR NO KEY UPDATE: rows that reference
    them still pass): two transactions that lock this way never deadlock. SQLite has one writer: nothing
    to do."""
    if not ids or not is_postgres(conn):
        return
    ordered = sorted(ids)
    stmt = _lock_statement(table)
    for start in range(0, len(ordered), CHUNK):
        await conn.execute(stmt, {"ids": ordered[start : start + CHUNK]})


@functools.cache
def _lock_statement(table: Table) -> Select[Any]:
    return (
        select(table.c.id)
        .where(among_param(table.c.id, "ids", True))
        .order_by(table.c.id)
        .with_for_update(key_share=True)
    )


async def add_in_id_order(
    conn: AsyncConnection, table: Table, column_name: str, amounts: Mapping[int, int], returning: Sequence[str] = ()
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
    if not is_postgres(conn):
        await conn.execute(_add_by_id(table, column_name), [{"a_id": i, "a_n": amounts[i]} for i in ids])
        read = _read_by_ids(table, column_name, tuple(returning))
        rows: list[Any] = []
        for start in range(0, len(ids), CHUNK):
            rows += await conn.execute(read, {"ids": ids[start : start + CHUNK]})
        return rows
    stmt = _add_in_id_order_postgres(table, column_name, tuple(returning))
    return list(await conn.execute(stmt, {"ids": ids, "ns": [amounts[i] for i in ids]}))


@functools.cache
def _add_in_id_order_postgres(table: Table, column_name: str, returning: tuple[str, ...]) -> Update:
    """WITH locked AS MATERIALIZED (SELECT id … ORDER BY id FOR NO KEY UPDATE) UPDATE table SET column =
    column + v.n FROM locked JOIN unnest(:ids, :ns) AS v(id, n) ON v.id = locked.id WHERE table.id =
    locked.id RETURNING id, column, returning…"""
    id_type = table.c.id.type
    locked = (
        select(table.c.id)
        .where(among_param(table.c.id, "ids", True))
        .order_by(table.c.id)
        .with_for_update(key_share=True)
        .cte("locked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    v = (
        func.unnest(bindparam("ids", type_=ARRAY(id_type)), bindparam("ns", type_=ARRAY(table.c[column_name].type)))
        .table_valued(column("id", id_type), column("n", table.c[column_name].type))
        .render_derived("v")
    )
    return (
        update(table)
        .where(table.c.id == locked.c.id, v.c.id == locked.c.id)
        .values({column_name: table.c[column_name] + v.c.n})
        .returning(table.c.id, table.c[column_name], *(table.c[c] for c in returning))
    )


@functools.cache
def _add_by_id(table: Table, column_name: str) -> Update:
    return (
        update(table)
        .where(table.c.id == bindparam("a_id"))
        .values({column_name: table.c[column_name] + bindparam("a_n")})
    )


@functools.cache
def _read_by_ids(table: Table, column_name: str, returning: tuple[str, ...]) -> Select[Any]:
    wanted = [table.c.id, table.c[column_name], *(table.c[c] for c in returning)]
    return select(*wanted).where(table.c.id.in_(bindparam("ids", expanding=True)))


async def add_to_counters(
    conn: AsyncConnection,
    counters: Table,
    column_name: str,
    amounts: Mapping[int, int],
    of: Table,
    returning: Sequence[str] = (),
    *,
    start: int,
) -> list[Any]:
    """`counters.column += amounts[id]` for the row of `of` of each id, where `counters` is keyed by the id of `of`
    (its one primary key column) and a missing row counts from `start` (it is written with `start + amount`).
    The rows of `of` are locked in id order first (FOR NO KEY UPDATE, as `add_in_id_order` locks them: two of
    these never deadlock); returns, for each id whose row of `of` exists, the id, the new `column` value and the
    `returning` columns of `of`, read under the lock. The ids without a row of `of` are missing from the result.

    PostgreSQL: one statement (`WITH locked AS MATERIALIZED (SELECT … FOR NO KEY UPDATE), up AS (INSERT …
    ON CONFLICT DO UPDATE … RETURNING …) SELECT … FROM up JOIN locked`). SQLite (one writer, no row locks): an
    executemany of the upsert in id order, then a select."""
    if not amounts:
        return []
    ids = sorted(amounts)
    shape = (counters, column_name, of, tuple(returning), start)
    if not is_postgres(conn):
        await conn.execute(_add_to_counters_sqlite(*shape), [{"a_id": i, "a_n": amounts[i]} for i in ids])
        read = _read_counters(*shape)
        rows: list[Any] = []
        for start_at in range(0, len(ids), CHUNK):
            rows += await conn.execute(read, {"ids": ids[start_at : start_at + CHUNK]})
        return rows
    stmt = _add_to_counters_postgres(*shape)
    return list(await conn.execute(stmt, {"ids": ids, "ns": [amounts[i] for i in ids]}))


def _key_of(counters: Table) -> str:
    (key,) = counters.primary_key.columns
    return key.name


@functools.cache
def _add_to_counters_postgres(
    counters: Table, column_name: str, of: Table, returning: tuple[str, ...], start: int
) -> Select[Any]:
    key, target = _key_of(counters), counters.c[column_name]
    locked = (
        select(of.c.id, *(of.c[c] for c in returning))
        .where(among_param(of.c.id, "ids", True))
        .order_by(of.c.id)
        .with_for_update(key_share=True)
        .cte("locked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    v = (
        func.unnest(bindparam("ids", type_=ARRAY(of.c.id.type)), bindparam("ns", type_=ARRAY(target.type)))
        .table_valued(column("id", of.c.id.type), column("n", target.type))
        .render_derived("v")
    )
    rows = select(v.c.id, v.c.n + start).select_from(locked.join(v, v.c.id == locked.c.id)).order_by(v.c.id)
    upsert = postgresql.insert(counters).from_select([key, column_name], rows)
    up = (
        upsert.on_conflict_do_update(
            index_elements=[key], set_={column_name: target + upsert.excluded[column_name] - start}
        )
        .returning(counters.c[key], target)
        .cte("up")
    )
    return select(up.c[key], up.c[column_name], *(locked.c[c] for c in returning)).join_from(
        up, locked, locked.c.id == up.c[key]
    )


@functools.cache
def _add_to_counters_sqlite(
    counters: Table, column_name: str, of: Table, returning: tuple[str, ...], start: int
) -> Insert:
    key, target = _key_of(counters), counters.c[column_name]
    a_id = bindparam("a_id", type_=of.c.id.type)
    row = select(a_id, bindparam("a_n", type_=target.type) + start).where(exists().where(of.c.id == a_id))
    upsert = sqlite.insert(counters).from_select([key, column_name], row)
    return upsert.on_conflict_do_update(
        index_elements=[key], set_={column_name: target + upsert.excluded[column_name] - start}
    )


@functools.cache
def _read_counters(counters: Table, column_name: str, of: Table, returning: tuple[str, ...], start: int) -> Select[Any]:
    key = counters.c[_key_of(counters)]
    return (
        select(of.c.id, counters.c[column_name], *(of.c[c] for c in returning))
        .join_from(of, counters, key == of.c.id)
        .where(of.c.id.in_(bindparam("ids", expanding=True)))
    )


__all__ = [
    "CHUNK",
    "Follower",
    "OnConflict",
    "RowUpdate",
    "Values",
    "add_in_id_order",
    "add_to_counters",
    "ignoring_duplicates",
    "insert_new",
    "insert_returning",
    "insert_rows",
    "is_postgres",
    "lock_in_id_order",
    "one_of",
    "one_statement",
    "select_among",
    "update_rows",
    "update_rows_together",
]
