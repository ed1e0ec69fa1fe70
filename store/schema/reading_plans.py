"""Scheduled reading (owned by billing): reading plans per group of meters, and their runs.

A plan says what to read (the registers, or the load profile), how often (daily, or weekly on a weekday),
from which meters (all, a settlement, a transformer, a tariff's subscribers) and in which local window of
the day. A run is one occasion of a plan: its read requests go out as a bulk job (`bulk_jobs`, each command
keyed `job:<job id>:meter:<meter id>`), spread over the window at a rate within the SMSC's licence."""

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Integer, String, Table, UniqueConstraint

from store.metadata import metadata
from store.types import ID, UtcDateTime

reading_plans = Table(
    "reading_plans",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("items", String(20), nullable=False),  # registers | load_profile (billing.rules.reading_plans.Items)
    Column("every", String(10), nullable=False),  # daily | weekly
    Column("weekday", Integer),  # weekly: 0 Monday … 6 Sunday, in the utility's time zone
    Column("group_kind", String(20), nullable=False),  # all | settlement | transformer | tariff
    Column("group_code", String(30)),  # settlement: region+settlement code; transformer or tariff: its id
    Column("window_start_min", Integer, nullable=False),  # local minutes after midnight
    Column("window_end_min", Integer, nullable=False),  # at or before the start: the window crosses midnight
    Column("enabled", Integer, nullable=False, server_default="1"),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per occasion of a plan: the local day of a scheduled run ("2026-12-03") or "manual:<time>" for a run
# an operator started. `cursor_meter_id` is the last meter queued (meters go in id order); `rate_per_s` the
# read requests a second the run may queue (0: no limit, all at once).
reading_plan_runs = Table(
    "reading_plan_runs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("plan_id", ID, ForeignKey("reading_plans.id"), nullable=False, index=True),
    Column("occasion", String(40), nullable=False),
    Column("job_id", ID, ForeignKey("bulk_jobs.id"), nullable=False, unique=True),
    Column("status", String(10), nullable=False),  # running | done
    Column("started_at", UtcDateTime, nullable=False),
    Column("window_ends_at", UtcDateTime, nullable=False),
    Column("rate_per_s", Float, nullable=False),
    Column("cursor_meter_id", BigInteger, nullable=False, server_default="0"),
    Column("last_tick_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    UniqueConstraint("plan_id", "occasion"),
)
