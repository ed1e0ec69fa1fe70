"""Subscriber self-service on the short number (owned by billing): every keyword SMS a subscriber sent and
what was answered (`sms_requests`), and the scratch-card vouchers (`voucher_batches`, `vouchers`)."""

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from store.metadata import metadata
from store.types import ID, UtcDateTime

sms_requests = Table(
    "sms_requests",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("msisdn", String(30), nullable=False),  # the sender, as digits
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), nullable=False, index=True),
    Column("keyword", String(10), nullable=False),  # bal | debt | pay | token | last | help
    Column("text", String(200), nullable=False),  # what was sent (a voucher code masked but its last 4 digits)
    # answered | rate_limited | wrong_code | used | locked | no_code | credited
    Column("outcome", String(20), nullable=False),
    Column("answer", Text),  # the SMS text answered, when one was
    Column("language", String(5), nullable=False),
    Column("notice_id", ID, ForeignKey("notices.id")),  # the answer's row in the notices (sent from the short number)
    Column("topup_id", ID, ForeignKey("topups.id")),
)
Index("ix_sms_requests_msisdn_received", sms_requests.c.msisdn, sms_requests.c.received_at)

voucher_batches = Table(
    "voucher_batches",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("amount_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("count", Integer, nullable=False),
    Column("note", String(200)),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

vouchers = Table(
    "vouchers",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("batch_id", ID, ForeignKey("voucher_batches.id"), nullable=False, index=True),
    Column("code_hash", String(64), nullable=False, unique=True),  # SHA-256 of the 14 digits; the code is not kept
    Column("last4", String(4), nullable=False),
    Column("amount_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(10), nullable=False, server_default="new"),  # new | used | void
    Column("used_at", UtcDateTime),
    Column("used_by", ID, ForeignKey("subscribers.id")),
    Column("topup_id", ID, ForeignKey("topups.id")),
    Column("created_at", UtcDateTime, nullable=False),
)
