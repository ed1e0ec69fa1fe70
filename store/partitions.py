"""Monthly partitions of the tables that grow for years, on PostgreSQL (declarative range partitioning).

`GROWING` names every table that grows without bound, its time column, and whether PostgreSQL splits it by
month. A partitioned table's primary key is (id, time): PostgreSQL wants the partition key in every unique
constraint. Tables whose unique keys must hold across all months are not split (their rows leave in batches,
`store.retention`):
- `commands`: referenced by its parts, its history, ledger entries and its own `depends_on_id`, and unique on
  `idempotency_key` and (meter, counter) for all time; a foreign key to a partitioned table needs the partition
  key in the referencing rows, and a per-month uniqueness would let a replayed request enqueue twice;
- `webhook_events`: (provider, event_id) is what makes a provider's retry a no-op, in whatever month it comes;
- `command_parts`: unique on (command, attempt, part), and its time (`submitted_at`) is unset until the submit.

Partitions are named `<table>_pYYYYMM` and hold [first of the month, first of the next) in UTC; a
`<table>_pdefault` partition takes rows no month partition covers (a job that did not run, back-dated rows),
and `<table>_before` holds the rows of before partitioning (from the beginning to the month after the newest).
`ensure` creates the months ahead: a month whose rows went to the default partition meanwhile is created empty,
filled with them and attached, so it works whenever it runs. On SQLite every function here does nothing: the
tables are plain and `store.retention` deletes their old rows in batches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class Growing:
    table: str
    at: str  # its time column (UTC): what retention and the partitions go by
    partitioned: bool  # split by month on PostgreSQL


GROWING: tuple[Growing, ...] = (
    Growing("command_history", "at", True),
    Growing("wrong_sms", "received_at", True),
    Growing("audit_log", "at", True),
    Growing("readings", "read_at", True),  # unique on (meter, register, read_at): the month is in the key
    Growing("command_parts", "submitted_at", False),
    Growing("webhook_events", "received_at", False),
)
PARTITIONED = tuple(g for g in GROWING if g.partitioned)


def growing(table: str) -> Growing:
    return next(g for g in GROWING if g.table == table)


def month_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return month.replace(year=index // 12, month=index % 12 + 1)


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def is_partition(name: str) -> bool:
    """A partition's table name (not a table the schema declares)."""
    return any(name.startswith(f"{g.table}_p") or name == f"{g.table}_before" for g in PARTITIONED)


def _literal(at: datetime) -> str:
    return f"'{at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}+00'"


def month_statements(g: Growing, month: datetime) -> list[str]:
    """DDL that adds the partition of `month` to `g.table`, taking over the rows of that month that the default
    partition holds (none, normally)."""
    name, low, high = partition_name(g.table, month), month, add_months(month, 1)
    in_range = f"{g.at} >= {_literal(low)} AND {g.at} < {_literal(high)}"
    return [
        f"CREATE TABLE {name} (LIKE {g.table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
        f"WITH moved AS (DELETE FROM {g.table}_pdefault WHERE {in_range} RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved",
        f"ALTER TABLE {g.table} ATTACH PARTITION {name} FOR VALUES FROM ({_literal(low)}) TO ({_literal(high)})",
    ]


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    low: datetime | None  # None: from the beginning
    high: datetime | None  # None: the default partition


_BOUND = re.compile(r"FROM \((.+?)\) TO \((.+?)\)")


def _bound(value: str) -> datetime | None:
    if value.upper() == "MINVALUE":
        return None
    return datetime.fromisoformat(value.strip("'")).astimezone(UTC)


_FOREIGN_KEYS = text(
    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = CAST(:t AS regclass) AND contype = 'f'"
)
_UNIQUE = text(  # unique constraints (their indexes are the constraint's, made with it)
    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = CAST(:t AS regclass) AND contype = 'u'"
)
PARTITIONS_LOCK = 0x736D7370  # PostgreSQL advisory lock, held by a transaction that adds or drops partitions
_LOCK = text(f"SELECT pg_advisory_xact_lock({PARTITIONS_LOCK})")
_LIST = text(
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
    "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
    "WHERE p.relname = :table AND p.relnamespace = current_schema()::regnamespace ORDER BY c.relname"
)


def _partitions(rows: Iterator[tuple[str, str]] | list[tuple[str, str]]) -> list[Partition]:
    out = []
    for name, bound in rows:
        found = _BOUND.search(bound)
        if found is None:  # DEFAULT
            out.append(Partition(name, None, None))
        else:
            out.append(Partition(name, _bound(found.group(1)), _bound(found.group(2))))
    return out


async def partitions(conn: AsyncConnection, table: str) -> list[Partition]:
    """The partitions of `table` (none on SQLite, or for a table that is not split)."""
    if conn.dialect.name != "postgresql":
        return []
    return _partitions([(r[0], r[1]) for r in await conn.execute(_LIST, {"table": table})])


def _missing(existing: list[Partition], months: list[datetime]) -> list[datetime]:
    def covered(month: datetime) -> bool:
        return any(p.high is not None and (p.low is None or p.low <= month) and month < p.high for p in existing)

    return [m for m in months if not covered(m)]


async def ensure(conn: AsyncConnection, now: datetime, months_ahead: int) -> list[str]:
    """Create the partitions of this month and the next `months_ahead` that do not exist; returns their names.
    Nothing on SQLite."""
    if conn.dialect.name != "postgresql":
        return []
    await conn.execute(_LOCK)  # two schedulers at once: the second waits, then finds the months made
    this = month_start(now)
    months = [add_months(this, n) for n in range(months_ahead + 1)]
    created = []
    for g in PARTITIONED:
        for month in _missing(await partitions(conn, g.table), months):
            for statement in month_statements(g, month):
                await conn.execute(text(statement))
            created.append(partition_name(g.table, month))
    return created


async def drop(conn: AsyncConnection, table: str, partition: str) -> bool:
    """Detach and drop one partition of `table` (its rows archived first by the caller); False when it is gone
    already (another process dropped it)."""
    await conn.execute(_LOCK)
    if partition not in {p.name for p in await partitions(conn, table)}:
        return False
    await conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {partition}"))
    await conn.execute(text(f"DROP TABLE {partition}"))
    return True


# --- the migration that splits the tables (store/migrations/versions: partition the growing tables) ---------


def partition_existing(sync: Connection, g: Growing, now: datetime, months_ahead: int) -> None:
    """Turn plain table `g.table` into a partitioned one, on PostgreSQL, in a migration: its rows stay where they
    are, as the `<table>_before` partition (rows up to the month after the newest; an empty table is dropped
    instead), the sequence of its ids goes on, its indexes and foreign keys are the parent's; then the default
    partition and the months from now to `months_ahead`."""
    t = g.table
    columns = sync.execute(
        text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ),
        {"t": t},
    ).all()
    uniques = sync.execute(_UNIQUE, {"t": t}).all()
    indexes = [
        (name, definition)
        for name, definition in sync.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t AND indexname <> :pk"),
            {"t": t, "pk": f"pk_{t}"},
        ).all()
        if name not in {u for u, _ in uniques}
    ]
    fks = sync.execute(
        _FOREIGN_KEYS,
        {"t": t},
    ).all()
    newest = sync.execute(text(f"SELECT max({g.at}) FROM {t}")).scalar()
    sequence = sync.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": t}).scalar()
    sync.execute(text(f"ALTER TABLE {t} RENAME TO {t}_before"))
    sync.execute(  # the parent's key, so that it becomes its partition's
        text(f"ALTER TABLE {t}_before DROP CONSTRAINT pk_{t}, ADD CONSTRAINT pk_{t}_before PRIMARY KEY (id, {g.at})")
    )
    for name, _ in [*indexes, *uniques]:  # a unique constraint is renamed with its index
        sync.execute(text(f"ALTER INDEX {name} RENAME TO {name}_before"))
    definitions = [
        f"{name} {type_}{' NOT NULL' if not_null else ''}{f' DEFAULT {default}' if default else ''}"
        for name, type_, not_null, default in columns
    ]
    definitions.append(f"CONSTRAINT pk_{t} PRIMARY KEY (id, {g.at})")
    definitions += [f"CONSTRAINT {name} {definition}" for name, definition in [*uniques, *fks]]
    sync.execute(text(f"CREATE TABLE {t} ({', '.join(definitions)}) PARTITION BY RANGE ({g.at})"))
    for _, definition in indexes:  # on the new parent (the old table's are renamed): each partition gets its own
        sync.execute(text(definition))
    sync.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY {t}.id"))
    if newest is None:
        sync.execute(text(f"DROP TABLE {t}_before"))
    else:
        high = add_months(month_start(newest), 1)
        bounds = f"FROM (MINVALUE) TO ({_literal(high)})"
        sync.execute(text(f"ALTER TABLE {t} ATTACH PARTITION {t}_before FOR VALUES {bounds}"))
    sync.execute(text(f"CREATE TABLE {t}_pdefault PARTITION OF {t} DEFAULT"))
    existing = _partitions([(r[0], r[1]) for r in sync.execute(_LIST, {"table": t})])
    this = month_start(now)
    for month in _missing(existing, [add_months(this, n) for n in range(months_ahead + 1)]):
        for statement in month_statements(g, month):
            sync.execute(text(statement))


def unpartition(sync: Connection, g: Growing) -> None:
    """The migration's way back: a plain table with every partition's rows, the partitions dropped."""
    t = g.table
    sequence = sync.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": t}).scalar()
    sync.execute(text(f"CREATE TABLE {t}_plain (LIKE {t} INCLUDING DEFAULTS)"))
    sync.execute(text(f"INSERT INTO {t}_plain SELECT * FROM {t}"))
    sync.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY {t}_plain.id"))
    uniques = sync.execute(_UNIQUE, {"t": t}).all()
    indexes = [
        (name, definition)
        for name, definition in sync.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"), {"t": t}
        ).all()
        if name not in {u for u, _ in uniques}
    ]
    fks = sync.execute(
        _FOREIGN_KEYS,
        {"t": t},
    ).all()
    sync.execute(text(f"DROP TABLE {t} CASCADE"))
    sync.execute(text(f"ALTER TABLE {t}_plain RENAME TO {t}"))
    sync.execute(text(f"ALTER TABLE {t} ADD CONSTRAINT pk_{t} PRIMARY KEY (id)"))
    for name, definition in [*uniques, *fks]:
        sync.execute(text(f"ALTER TABLE {t} ADD CONSTRAINT {name} {definition}"))
    for name, definition in indexes:
        if name != f"pk_{t}":
            sync.execute(text(definition.replace(" ON ONLY ", " ON ")))
