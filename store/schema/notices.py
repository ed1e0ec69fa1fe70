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
