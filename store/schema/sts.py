"""STS keypad tokens (owned by billing): which meters have a keypad and their STS parameters, and the
vending keys, wrapped under the master key (docs/sts.md)."""

from sqlalchemy import Column, ForeignKey, Integer, LargeBinary, String, Table, UniqueConstraint

from store.metadata import metadata
from store.types import ID, UtcDateTime

# A meter with an STS keypad. The decoder key is never stored: it is derived from the vending key of
# (sgc, key_revision) and these parameters whenever a token is made.
sts_meters = Table(
    "sts_meters",
    metadata,
    Column("meter_id", ID, ForeignKey("meters.id"), primary_key=True),
    Column("iin", String(6), nullable=False),  # 600727, or 0000 with a 13-digit DRN
    Column("drn", String(13), nullable=False),
    Column("supply_group_code", String(6), nullable=False),
    Column("tariff_index", Integer, nullable=False),
    Column("key_revision", Integer, nullable=False),
    Column("key_type", Integer, nullable=False),
    Column("key_expiry", Integer, nullable=False, server_default="255"),
    Column("base_date_year", Integer, nullable=False, server_default="1993"),  # 1993 | 2014
    # the key change pair last issued (new KRN, rollover to the next base date) and whether the meter took it
    Column("key_change_state", String(10), nullable=False, server_default="none"),  # none | issued | accepted
    Column("key_change_revision", Integer),
    # "<first> <second>" (or four tokens for a 16-byte key), " R" after them for a rollover
    Column("key_change_tokens", String(90)),
    Column("key_change_issued_at", UtcDateTime),
    Column("key_change_accepted_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

sts_vending_keys = Table(
    "sts_vending_keys",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("supply_group_code", String(6), nullable=False),
    Column("key_revision", Integer, nullable=False),
    Column("algorithm", String(8), nullable=False),  # dkga02 (64-bit key) | dkga04 (160 bits or more)
    Column("wrapped_key", LargeBinary, nullable=False),  # AES key wrap with padding (RFC 5649), master key
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("supply_group_code", "key_revision"),
)
