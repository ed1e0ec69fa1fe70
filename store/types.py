"""Column types shared by every table: UTC timestamps that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime. Stored as `timestamptz` on PostgreSQL and as naive UTC text on SQLite.

    Naive datetimes are refused on the way in: every time in smsmeter is explicit UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: smsmeter stores only aware UTC times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # aiosqlite hands back text only where SQLAlchemy's conversion was bypassed
        stamp: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)


# Surrogate keys: BIGINT on PostgreSQL, INTEGER on SQLite (the only type SQLite auto-increments as rowid).
ID = BigInteger().with_variant(Integer, "sqlite")
