"""Operators, roles, API keys and the audit log (owned by web)."""

from sqlalchemy import JSON, Column, ForeignKey, Integer, String, Table

from store.metadata import metadata
from store.types import ID, UtcDateTime

roles = Table(
    "roles",
    metadata,
    Column("name", String(20), primary_key=True),  # admin | operator | cashier | viewer | auditor
    Column("description", String(200), nullable=False),
)

operators = Table(
    "operators",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("password_hash", String(200)),  # NULL for RADIUS-only accounts
    Column("role", String(20), ForeignKey("roles.name"), nullable=False),
    Column("language", String(5)),  # NULL: the browser's language (Accept-Language)
    Column("email", String(320)),  # where alarm notices reach the operator (alarm rules naming their role)
    Column("phone", String(30)),
    Column("active", Integer, nullable=False, server_default="1"),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),  # e.g. the CIS, MDM or SCADA system
    Column("key_hash", String(200), nullable=False, unique=True),
    Column("role", String(20), ForeignKey("roles.name"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

# Append-only: written in the same transaction as the action it records; nothing in the app edits it.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("actor_kind", String(12), nullable=False),  # operator | api_key | subscriber | system
    Column("actor", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", String(200)),
    Column("before", JSON),
    Column("after", JSON),
    Column("address", String(64)),
)

# Signed-in browsers: operators of the console and subscribers of the portal. `id` is the HMAC of the
# cookie's token (the token itself is never stored); a row is deleted at logout.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("principal_kind", String(12), nullable=False),  # operator | subscriber
    Column("operator_id", ID, ForeignKey("operators.id", ondelete="CASCADE")),
    Column("subscriber_id", ID, ForeignKey("subscribers.id", ondelete="CASCADE")),
    Column("role", String(20), nullable=False),  # the role granted at login (RADIUS may grant it)
    Column("csrf_token", String(64), nullable=False),
    Column("language", String(5)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("address", String(64)),
)

# Portal sign-in state per subscriber: failures in a row, lockout, and the pending one-time code (hashed).
portal_logins = Table(
    "portal_logins",
    metadata,
    Column("subscriber_id", ID, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", UtcDateTime),
    Column("otp_hash", String(64)),
    Column("otp_expires_at", UtcDateTime),
    Column("otp_attempts", Integer, nullable=False, server_default="0"),
)
