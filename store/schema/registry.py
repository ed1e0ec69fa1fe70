"""Subscribers, addresses, transformers, meters and meter keys (owned by billing's registry)."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)

from store.metadata import metadata
from store.types import ID, UtcDateTime

regions = Table(
    "regions",
    metadata,
    Column("code", String(2), primary_key=True),
    Column("name", String(200), nullable=False),
)

settlements = Table(
    "settlements",
    metadata,
    Column("region_code", String(2), ForeignKey("regions.code"), primary_key=True),
    Column("code", String(2), primary_key=True),
    Column("name", String(200), nullable=False),
)

streets = Table(
    "streets",
    metadata,
    Column("region_code", String(2), primary_key=True),
    Column("settlement_code", String(2), primary_key=True),
    Column("code", String(3), primary_key=True),
    Column("name", String(200), nullable=False),
    ForeignKeyConstraint(["region_code", "settlement_code"], ["settlements.region_code", "settlements.code"]),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("code", String(15), nullable=False, unique=True),  # region 2 settlement 2 street 3 building 4 apartment 4
    Column("region_code", String(2), nullable=False),
    Column("settlement_code", String(2), nullable=False),
    Column("street_code", String(3), nullable=False),
    Column("building", String(4), nullable=False),
    Column("apartment", String(4), nullable=False),
    Column("name", String(200), nullable=False),
    Column("father_name", String(200)),
    Column("phone", String(20)),
    Column("email", String(320)),
    Column("language", String(5), nullable=False, server_default="en"),
    Column("contract_number", String(50)),
    Column("identity_document", String(100)),
    Column("family_size", Integer),
    Column("rooms", Integer),
    Column("registered_on", Date),
    Column("ended_on", Date),
    Column("status", String(12), nullable=False, server_default="active"),  # active | suspended | closed
    Column("old_code", String(30)),
    Column("normative_wh_month", BigInteger),  # normative consumption for estimates, Wh per month
    Column("tariff_id", ID, ForeignKey("tariffs.id")),
    Column("portal_password_hash", String(200)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(
        ["region_code", "settlement_code", "street_code"],
        ["streets.region_code", "streets.settlement_code", "streets.code"],
    ),
)
Index("ix_subscribers_name", subscribers.c.name)
Index("ix_subscribers_phone", subscribers.c.phone)

subscriber_history = Table(
    "subscriber_history",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), nullable=False, index=True),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("changed_by", String(100), nullable=False),
    Column("changes", JSON, nullable=False),  # {"field": [before, after], ...}
)

transformers = Table(
    "transformers",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("code", String(30), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("feeder", String(100)),
    Column("loss_alarm_percent", Integer, nullable=False, server_default="10"),
)

meters = Table(
    "meters",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("code", String(20), nullable=False, unique=True),
    Column("subscriber_id", ID, ForeignKey("subscribers.id"), index=True),
    Column("msisdn", String(20), nullable=False, index=True),  # the meter SIM's number
    Column("make", String(100)),
    Column("model", String(100)),
    Column("profile", String(30), nullable=False, server_default="binary"),  # binary | xml; see meter_protocol
    Column("firmware", String(50)),  # as the manufacturer's key file gives it
    Column("app_port", Integer),  # destination application port (UDH IEI 0x05), when the radio module wants one
    Column("kind", String(12), nullable=False, server_default="electricity"),  # electricity|water|gas|heat
    Column("phases", Integer, nullable=False, server_default="1"),
    Column("transformer_id", ID, ForeignKey("transformers.id"), index=True),
    Column("is_balance_meter", Integer, nullable=False, server_default="0"),
    Column("status", String(12), nullable=False, server_default="active"),  # stock | active | archived
    Column("installed_at", UtcDateTime, nullable=False),
    Column("archived_at", UtcDateTime),
    Column("replaced_by_id", ID, ForeignKey("meters.id")),
    Column("key_id", Integer, nullable=False, server_default="0"),  # the key revision in force
    # The top-up transfer id the next credit to this meter carries (increases per meter in issue order).
    Column("next_transfer_id", BigInteger, nullable=False, server_default="1"),
    Column("notes", String(500)),
)

meter_keys = Table(
    "meter_keys",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("meter_id", ID, ForeignKey("meters.id"), nullable=False),
    Column("key_id", Integer, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),  # the AES key, wrapped under the master key
    Column("status", String(12), nullable=False, server_default="active"),  # pending | active | retired
    Column("created_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime),
    UniqueConstraint("meter_id", "key_id"),
)

# The friendly-hours calendar: no automatic disconnect on these days (the utility's public holidays).
holidays = Table(
    "holidays",
    metadata,
    Column("day", Date, primary_key=True),
    Column("name", String(200), nullable=False),
)

meter_history = Table(
    "meter_history",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("meter_id", ID, ForeignKey("meters.id"), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("by", String(100), nullable=False),
    Column("event", String(30), nullable=False),  # installed | replaced | archived | updated | key_issued
    Column("detail", JSON, nullable=False),
)
