"""Notices (owned by billing): to subscribers (arrears, low credit) and to operators (alarms, by the alarm
rules). Each cause is sent once: `cause_key` is unique."""

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, String, Table, Text

from store.metadata import metadata
from store.types import ID, UtcDateTime

notices = Table(
    "notices",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), index=True),  # NULL: a notice to an operator
    Column("alarm_id", ID, ForeignKey("alarms.id")),  # the alarm an operator's notice tells of
    Column("channel", String(10), nullable=False),  # sms | email
    Column("stage", String(20), nullable=False),  # reminder | final | disconnect | low_credit | ...
    Column("cause_key", String(200), nullable=False, unique=True),
    Column("status", String(10), nullable=False),  # queued | sent | failed
    Column("subject", String(300)),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    Column("error", String(500)),
    Column("recipient", String(320)),  # the phone number or e-mail address, as it was when queued
    Column("language", String(5)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime),
)
Index("ix_notices_status_next", notices.c.status, notices.c.next_attempt_at)

# Who is told of which alarm, and what is done automatically. A rule matches an alarm of its `kind` ("*": any)
# whose severity is `min_severity` or higher; it sends e-mail and/or SMS to its `recipients` (addresses and
# phone numbers) and to the operators of its `role`, and may name an automatic action (relay_off), which runs
# only when the utility enables automatic actions and only within friendly hours.
alarm_rules = Table(
    "alarm_rules",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("min_severity", String(10), nullable=False),  # info | warning | critical
    Column("email", Integer, nullable=False, server_default="1"),
    Column("sms", Integer, nullable=False, server_default="0"),
    Column("role", String(20), ForeignKey("roles.name")),
    Column("recipients", JSON, nullable=False),  # e-mail addresses and phone numbers
    Column("action", String(20), nullable=False, server_default="none"),  # none | relay_off
    Column("enabled", Integer, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A report sent by e-mail on a schedule (owned by the web shell, whose report queries it runs): `report` names one
# of the console's reports, `period` says how often and over what window (daily: yesterday; weekly: the last 7
# days; monthly: the last 30), as CSV to `recipients` (e-mail addresses). The job claims a due schedule by moving
# `next_run_at` on before sending, so a report goes at most once per period.
report_schedules = Table(
    "report_schedules",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("report", String(30), nullable=False),
    Column("period", String(10), nullable=False),  # daily | weekly | monthly
    Column("format", String(4), nullable=False, server_default="csv"),  # csv | xlsx | pdf: the file attached
    Column("recipients", JSON, nullable=False),
    Column("active", Integer, nullable=False, server_default="1"),
    Column("next_run_at", UtcDateTime, nullable=False),
    Column("last_run_at", UtcDateTime),
    Column("last_status", String(10)),  # sent | failed
    Column("last_error", String(300)),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
