"""The meters' frame counters, the command outbox, SMS parts, state history, wrong SMS, inbound text SMS,
readings and alarms (owned by the gateway)."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)

from store.metadata import metadata
from store.types import ID, UtcDateTime

# The gateway's frame counters of a meter: the head-end → meter counter it seals the next command with (never
# reused, see meter_protocol's spec) and the meter → head-end anti-replay window (highest counter seen, the bitmap
# below it). A meter without a row has the counters it starts with: the row is written the first time the gateway
# moves one of them on.
meter_counters = Table(
    "meter_counters",
    metadata,
    Column("meter_id", ID, ForeignKey("meters.id"), primary_key=True, autoincrement=False),
    Column("next_counter", BigInteger, nullable=False, server_default="1"),
    Column("in_highest", BigInteger, nullable=False, server_default="0"),
    Column("in_bitmap", BigInteger, nullable=False, server_default="0"),
)

# One row per command to a meter. `state` is the handshake code: 0:0 sending, 0:1 accepted by the operator,
# 1:0 received by the meter, 1:1 processed by the meter; or a final failure state.
commands = Table(
    "commands",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("meter_id", ID, ForeignKey("meters.id"), nullable=False),
    Column("kind", String(30), nullable=False),  # credit | tariff | relay_off | relay_on | ...
    Column("counter", BigInteger, nullable=False),  # the head-end counter the frame was sealed with
    Column("key_id", Integer, nullable=False),
    Column("frame", LargeBinary, nullable=False),  # the sealed frame; every retry resends exactly these bytes
    Column("payload", JSON, nullable=False),  # the command's fields, for display and audit
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime),
    Column("claimed_by", String(100)),
    Column("claimed_until", UtcDateTime),
    Column("depends_on_id", ID, ForeignKey("commands.id")),
    Column("idempotency_key", String(200), unique=True),
    Column("smsc_status", Integer),
    Column("result_reason", String(200)),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("final_at", UtcDateTime),
    UniqueConstraint("meter_id", "counter"),
)
Index("ix_commands_state_next", commands.c.state, commands.c.next_attempt_at)

command_parts = Table(
    "command_parts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("command_id", ID, ForeignKey("commands.id"), nullable=False),
    Column("seq", Integer, nullable=False),  # 1-based part number
    Column("body", LargeBinary, nullable=False),  # user data with its UDH
    Column("has_udh", Integer, nullable=False, server_default="0"),
    Column("attempt", Integer, nullable=False, server_default="0"),  # one row per part per attempt
    Column("message_id", String(65), index=True),  # the SMSC's id, normalised
    Column("state", String(20), nullable=False, server_default="0:0"),
    Column("smsc_status", Integer),
    Column("submitted_at", UtcDateTime),
    Column("delivered_at", UtcDateTime),
    UniqueConstraint("command_id", "attempt", "seq"),
)

# Delivery receipts whose part is not known yet (the receipt overtook its submit_sm_resp's record, or the resp
# came late, or another gateway sent the part): kept here, so a restart does not lose them (the SMSC was
# answered), until the part's message id is recorded or `receipt_park_s` has passed (gateway.recorder).
held_receipts = Table(
    "held_receipts",
    metadata,
    Column("message_id", String(65), primary_key=True),  # the SMSC's id, normalised
    Column("state", String(20), nullable=False),  # the receipt's state (gateway.ports.ReceiptState)
    Column("error_code", Integer),
    Column("done_at", UtcDateTime),
    Column("held_at", UtcDateTime, nullable=False),
)

command_history = Table(
    "command_history",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("command_id", ID, ForeignKey("commands.id"), nullable=False, index=True),
    Column("from_state", String(20)),
    Column("to_state", String(20), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("source", String(30), nullable=False),  # outbox | smsc | receipt | meter | timer | operator
    Column("detail", String(500)),
)

wrong_sms = Table(
    "wrong_sms",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False, index=True),
    Column("source", String(30), nullable=False),
    Column("destination", String(30), nullable=False),
    Column("body", LargeBinary, nullable=False),
    # wrong_number | unknown_sender | malformed | wrong_meter | wrong_direction | unknown_key | bad_tag | replay
    # | unmatched_ack | not_a_report
    Column("reason", String(30), nullable=False),
    Column("detail", String(500)),
    Column("meter_id", ID, ForeignKey("meters.id")),  # the sending meter, when the sender is one
)

# text SMS from numbers that are not meters (subscribers' keywords), kept in the transaction that received them
# and answered by the self-service worker; `handled_at` is set in the transaction that answers (or refuses) one
inbound_texts = Table(
    "inbound_texts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("source", String(30), nullable=False),
    Column("destination", String(30), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("data_coding", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("claimed_until", UtcDateTime),  # a worker's lease; when it runs out another worker takes the SMS
    Column("handled_at", UtcDateTime),
    Column("error", String(200)),  # the last failure to answer it
)
Index("ix_inbound_texts_pending", inbound_texts.c.handled_at, inbound_texts.c.id)

readings = Table(
    "readings",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("meter_id", ID, ForeignKey("meters.id"), nullable=False),
    Column("read_at", UtcDateTime, nullable=False),
    Column("register", String(30), nullable=False),  # e.g. import_wh, export_wh, t1_wh
    Column("value", BigInteger, nullable=False),  # Wh, or the register's own integer unit
    Column("received_at", UtcDateTime, nullable=False),
    # meter_report | read_request | manual | import (billing.rules.readings.Source)
    Column("source", String(20), nullable=False, server_default="meter_report"),
    # ok | gap | backwards | spike | estimated (billing.rules.readings.Status)
    Column("status", String(12), nullable=False, server_default="ok"),
    Column("entered_by", String(100)),  # the operator or file of a manual or imported reading
    UniqueConstraint("meter_id", "register", "read_at"),
)
Index("ix_readings_read_at", readings.c.read_at)

balance_reports = Table(
    "balance_reports",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("meter_id", ID, ForeignKey("meters.id"), nullable=False, index=True),
    Column("reported_at", UtcDateTime, nullable=False),
    Column("credit_minor", BigInteger, nullable=False),
    Column("relay_closed", Integer, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

alarms = Table(
    "alarms",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("meter_id", ID, ForeignKey("meters.id"), index=True),
    Column("command_id", ID, ForeignKey("commands.id")),
    Column("kind", String(30), nullable=False),  # tamper | magnetic | cover_open | command_failed | ...
    Column("severity", String(10), nullable=False, server_default="warning"),
    Column("raised_at", UtcDateTime, nullable=False, index=True),
    Column("detail", String(500)),
    Column("acknowledged_at", UtcDateTime),
    Column("acknowledged_by", String(100)),
    # Set while the alarm is open for conditions raised again and again (commands stuck, the SMSC down): one
    # open alarm per condition. Acknowledging clears it, so the next occurrence raises a new alarm.
    Column("open_key", String(100), unique=True),
    Column("notified_at", UtcDateTime, index=True),  # the alarm rules were applied (notices queued)
    Column("action_state", String(20), index=True),  # the automatic action: pending | sent | skipped (NULL: none)
    Column("action_detail", String(200)),
)
