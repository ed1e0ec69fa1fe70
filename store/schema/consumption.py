"""Consumption pre-aggregated per meter, register and local day (owned by billing's consumption job), and
the watermarks of the jobs that read tables incrementally."""

from sqlalchemy import BigInteger, Column, Date, ForeignKey, Integer, String, Table

from store.metadata import metadata
from store.types import ID, UtcDateTime

# One row per meter, register and day in the utility's time zone: the register's increase over that day
# (`quantity`, in the register's unit), how many readings fell in it, and whether any of it is estimated.
consumption_daily = Table(
    "consumption_daily",
    metadata,
    Column("meter_id", ID, ForeignKey("meters.id"), primary_key=True),
    Column("register", String(30), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    Column("readings", Integer, nullable=False, server_default="0"),
    Column("estimated", Integer, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime, nullable=False),
)

# How far an incremental job has read: the highest id of the rows it has taken in (e.g. readings.id).
job_watermarks = Table(
    "job_watermarks",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("position", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime, nullable=False),
)
