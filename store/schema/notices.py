"""Arrears notices (owned by billing). Each cause is sent once: `cause_key` is unique."""

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from store.metadata import metadata
from store.types import ID, UtcDateTime

notices = Table(
    "notices",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), nullable=False, index=True),
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
