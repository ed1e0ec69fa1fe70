"""Who is calling: operators (local argon2 passwords or RADIUS), API keys of integrations, subscribers of
the portal (password or a one-time code by SMS). Sessions live in `web_sessions`; failed logins in a row
lock an account for a while. Every login, failed login and logout is in the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.registry import set_portal_password_hash
from billing.rules.alarms import is_email, is_phone
from config import WebSettings
from store import audit
from store.schema.auth import api_keys, operators, portal_logins, web_sessions
from store.schema.registry import subscribers
from web.errors import InvalidInput, NotFound
from web.keys import PasswordChecker
from web.permissions import STAFF_ROLES, SUBSCRIBER
from web.security import new_token, token_digest

# OWASP's argon2id profile (19 MiB, 2 passes, 1 lane): ~0.2 s a hash on a busy two-core machine, where the
# library's default profile (64 MiB, 3 passes) took ~1 s — too slow under a burst of logins.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Verified against when the user does not exist, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
API_KEY_PREFIX = "smk_"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request."""

    kind: str  # operator | api_key | subscriber
    id: int
    name: str  # operator user name, API key name, subscriber code
    role: str
    display_name: str = ""
    subscriber_id: int | None = None  # only for kind == "subscriber"
    session_id: str | None = None
    csrf_token: str | None = None
    language: str | None = None

    def actor(self, address: str | None) -> audit.Actor:
        return audit.Actor(self.kind, self.name, address)


class LoginOutcome(Enum):
    OK = "ok"
    REFUSED = "refused"  # wrong name or password: one answer for both
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: LoginOutcome
    principal: Principal | None = None
    token: str | None = None  # the session cookie's value
    retry_after_s: int = 0


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def _lock_retry_s(locked_until: datetime | None, now: datetime) -> int:
    if locked_until is None or locked_until <= now:
        return 0
    return max(1, int((locked_until - now).total_seconds()) + 1)


# --- sessions ---------------------------------------------------------------------------------------


async def open_session(
    conn: AsyncConnection,
    key: bytes,
    settings: WebSettings,
    *,
    kind: str,
    role: str,
    now: datetime,
    address: str | None,
    operator_id: int | None = None,
    subscriber_id: int | None = None,
    language: str | None = None,
) -> tuple[str, str, str]:
    """Write a session row; returns (cookie token, session id, CSRF token)."""
    token = new_token()
    session_id = token_digest(key, token)
    csrf = secrets.token_hex(32)
    await conn.execute(
        insert(web_sessions).values(
            id=session_id,
            principal_kind=kind,
            operator_id=operator_id,
            subscriber_id=subscriber_id,
            role=role,
            csrf_token=csrf,
            language=language,
            created_at=now,
            last_seen_at=now,
            expires_at=min(
                now + timedelta(minutes=settings.session_idle_min), now + timedelta(hours=settings.session_max_h)
            ),
            address=address,
        )
    )
    return token, session_id, csrf


async def load_session(
    conn: AsyncConnection, key: bytes, settings: WebSettings, token: str, now: datetime
) -> Principal | None:
    """The principal of a live session, sliding its idle expiry; None when unknown or expired."""
    session_id = token_digest(key, token)
    row = (await conn.execute(select(web_sessions).where(web_sessions.c.id == session_id))).mappings().first()
    if row is None:
        return None
    if row["expires_at"] <= now:
        await conn.execute(delete(web_sessions).where(web_sessions.c.id == session_id))
        return None
    if row["principal_kind"] == "operator":
        op = (await conn.execute(select(operators).where(operators.c.id == row["operator_id"]))).mappings().first()
        if op is None or not op["active"]:
            await conn.execute(delete(web_sessions).where(web_sessions.c.id == session_id))
            return None
        principal = Principal(
            "operator",
            op["id"],
            op["username"],
            row["role"],
            op["display_name"],
            session_id=session_id,
            csrf_token=row["csrf_token"],
            language=row["language"] or op["language"],
        )
    else:
        sub = (
            (await conn.execute(select(subscribers).where(subscribers.c.id == row["subscriber_id"]))).mappings().first()
        )
        if sub is None or sub["status"] == "closed":
            await conn.execute(delete(web_sessions).where(web_sessions.c.id == session_id))
            return None
        principal = Principal(
            "subscriber",
            sub["id"],
            sub["code"],
            SUBSCRIBER,
            sub["name"],
            subscriber_id=sub["id"],
            session_id=session_id,
            csrf_token=row["csrf_token"],
            language=row["language"] or sub["language"],
        )
    if (now - row["last_seen_at"]).total_seconds() >= 30:
        hard_end = row["created_at"] + timedelta(hours=settings.session_max_h)
        await conn.execute(
            update(web_sessions)
            .where(web_sessions.c.id == session_id)
            .values(last_seen_at=now, expires_at=min(hard_end, now + timedelta(minutes=settings.session_idle_min)))
        )
    return principal


async def close_session(conn: AsyncConnection, session_id: str) -> None:
    await conn.execute(delete(web_sessions).where(web_sessions.c.id == session_id))


async def set_session_language(conn: AsyncConnection, session_id: str, language: str) -> None:
    await conn.execute(update(web_sessions).where(web_sessions.c.id == session_id).values(language=language))


# --- operators ---------------------------------------------------------------------------------------


async def login_operator(
    conn: AsyncConnection,
    key: bytes,
    settings: WebSettings,
    radius: PasswordChecker | None,
    username: str,
    password: str,
    now: datetime,
    address: str | None,
) -> LoginResult:
    """Check an operator's password locally, or with RADIUS when the account has no local password (or
    does not exist yet: a RADIUS user gets an account on first login, with the role RADIUS grants).
    Runs in the caller's transaction; failures are counted and audited, so commit even when refused."""
    op = (await conn.execute(select(operators).where(operators.c.username == username))).mappings().first()
    if op is not None and (retry := _lock_retry_s(op["locked_until"], now)):
        await audit.record(conn, audit.Actor("operator", username, address), "login.locked", now)
        return LoginResult(LoginOutcome.LOCKED, retry_after_s=retry)
    role: str | None = None
    via = "password"
    if op is not None and op["password_hash"]:
        role = op["role"] if await verify_password(op["password_hash"], password) and op["active"] else None
    elif radius is not None:
        via = "radius"
        role = await radius(username, password)
        if role is not None and op is not None and not op["active"]:
            role = None
    else:
        await verify_password(None, password)
    actor = audit.Actor("operator", username, address)
    if role is None:
        if op is not None:
            failures = op["failed_logins"] + 1
            locked_until = (
                now + timedelta(minutes=settings.lockout_min) if failures >= settings.login_max_failures else None
            )
            await conn.execute(
                update(operators)
                .where(operators.c.id == op["id"])
                .values(failed_logins=0 if locked_until else failures, locked_until=locked_until)
            )
            if locked_until:
                await audit.record(conn, actor, "login.lockout", now, target=f"operator:{username}")
        await audit.record(conn, actor, "login.failed", now, after={"via": via})
        return LoginResult(LoginOutcome.REFUSED)
    if op is None:
        operator_id = await conn.scalar(
            insert(operators)
            .values(username=username, display_name=username, password_hash=None, role=role, created_at=now)
            .returning(operators.c.id)
        )
        language = None
        display = username
    else:
        operator_id = op["id"]
        language = op["language"]
        display = op["display_name"]
        values: dict[str, object] = {"failed_logins": 0, "locked_until": None}
        if via == "radius":
            values["role"] = role
        await conn.execute(update(operators).where(operators.c.id == operator_id).values(**values))
    token, session_id, csrf = await open_session(
        conn, key, settings, kind="operator", role=role, now=now, address=address, operator_id=operator_id
    )
    await audit.record(conn, actor, "login", now, after={"via": via, "role": role})
    principal = Principal("operator", operator_id, username, role, display, None, session_id, csrf, language)
    return LoginResult(LoginOutcome.OK, principal, token)


async def create_operator(
    conn: AsyncConnection,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str | None,
    now: datetime,
    language: str | None = None,
    password_hash: str | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> int:
    """A local operator. `password_hash` (an argon2 hash made earlier) may stand in for `password`; `email` and
    `phone` are where alarm rules naming the operator's role reach them."""
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown role {role!r}")
    if password:
        password_hash = await hash_password(password)
    operator_id = await conn.scalar(
        insert(operators)
        .values(
            username=username,
            display_name=display_name,
            password_hash=password_hash,
            role=role,
            language=language,
            email=email or None,
            phone=phone or None,
            created_at=now,
        )
        .returning(operators.c.id)
    )
    return int(operator_id)


async def set_operator_contact(
    conn: AsyncConnection, actor: audit.Actor, operator_id: int, *, email: str | None, phone: str | None, now: datetime
) -> None:
    """Where alarm notices reach the operator; audited with before and after. Raises InvalidInput."""
    if email and not is_email(email):
        raise InvalidInput("email", "is not an e-mail address")
    if phone and not is_phone(phone):
        raise InvalidInput("phone", "digits only, 6 to 15, an optional leading +")
    o = operators.c
    row = (await conn.execute(select(o.username, o.email, o.phone).where(o.id == operator_id))).first()
    if row is None:
        raise NotFound("operator", operator_id)
    await conn.execute(update(operators).where(o.id == operator_id).values(email=email or None, phone=phone or None))
    await audit.record(
        conn,
        actor,
        "operator.contact",
        now,
        target=f"operator:{row.username}",
        before={"email": row.email, "phone": row.phone},
        after={"email": email or None, "phone": phone or None},
    )


# --- API keys -----------------------------------------------------------------------------------------


def api_key_digest(raw: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough (a slow one would not add strength).
    return hashlib.sha256(raw.encode()).hexdigest()


async def create_api_key(conn: AsyncConnection, *, name: str, role: str, now: datetime) -> tuple[int, str]:
    """A new key for an integration; returns (id, the raw key — shown once, never stored)."""
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown role {role!r}")
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = await conn.scalar(
        insert(api_keys)
        .values(name=name, key_hash=api_key_digest(raw), role=role, created_at=now)
        .returning(api_keys.c.id)
    )
    return int(key_id), raw


async def revoke_api_key(conn: AsyncConnection, key_id: int, now: datetime) -> bool:
    result = await conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(result.rowcount)


async def principal_for_api_key(conn: AsyncConnection, raw: str) -> Principal | None:
    if not raw.startswith(API_KEY_PREFIX):
        return None
    row = (
        (
            await conn.execute(
                select(api_keys).where(api_keys.c.key_hash == api_key_digest(raw), api_keys.c.revoked_at.is_(None))
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return Principal("api_key", row["id"], row["name"], row["role"], row["name"])


# --- subscribers (the portal) ------------------------------------------------------------------------


async def _portal_state(conn: AsyncConnection, subscriber_id: int) -> dict[str, object]:
    row = (
        (await conn.execute(select(portal_logins).where(portal_logins.c.subscriber_id == subscriber_id)))
        .mappings()
        .first()
    )
    if row is None:
        await conn.execute(insert(portal_logins).values(subscriber_id=subscriber_id))
        return {"failed_logins": 0, "locked_until": None, "otp_hash": None, "otp_expires_at": None, "otp_attempts": 0}
    return dict(row)


async def _subscriber_by_code(conn: AsyncConnection, code: str) -> dict[str, object] | None:
    row = (await conn.execute(select(subscribers).where(subscribers.c.code == code))).mappings().first()
    return dict(row) if row is not None and row["status"] != "closed" else None


async def _portal_failure(
    conn: AsyncConnection, settings: WebSettings, subscriber_id: int, state: dict[str, object], now: datetime
) -> None:
    failures = int(state["failed_logins"]) + 1  # type: ignore[call-overload]
    locked_until = now + timedelta(minutes=settings.lockout_min) if failures >= settings.login_max_failures else None
    await conn.execute(
        update(portal_logins)
        .where(portal_logins.c.subscriber_id == subscriber_id)
        .values(failed_logins=0 if locked_until else failures, locked_until=locked_until)
    )


async def _portal_success(
    conn: AsyncConnection,
    key: bytes,
    settings: WebSettings,
    sub: dict[str, object],
    now: datetime,
    address: str | None,
    via: str,
) -> LoginResult:
    subscriber_id = int(sub["id"])  # type: ignore[call-overload]
    await conn.execute(
        update(portal_logins)
        .where(portal_logins.c.subscriber_id == subscriber_id)
        .values(failed_logins=0, locked_until=None, otp_hash=None, otp_expires_at=None, otp_attempts=0)
    )
    token, session_id, csrf = await open_session(
        conn, key, settings, kind="subscriber", role=SUBSCRIBER, now=now, address=address, subscriber_id=subscriber_id
    )
    code = str(sub["code"])
    await audit.record(conn, audit.Actor("subscriber", code, address), "portal.login", now, after={"via": via})
    principal = Principal(
        "subscriber",
        subscriber_id,
        code,
        SUBSCRIBER,
        str(sub["name"]),
        subscriber_id,
        session_id,
        csrf,
        str(sub["language"]),
    )
    return LoginResult(LoginOutcome.OK, principal, token)


async def login_subscriber(
    conn: AsyncConnection,
    key: bytes,
    settings: WebSettings,
    code: str,
    password: str,
    now: datetime,
    address: str | None,
) -> LoginResult:
    sub = await _subscriber_by_code(conn, code)
    if sub is None:
        await verify_password(None, password)
        await audit.record(conn, audit.Actor("subscriber", code[:100], address), "portal.login.failed", now)
        return LoginResult(LoginOutcome.REFUSED)
    subscriber_id = int(sub["id"])  # type: ignore[call-overload]
    state = await _portal_state(conn, subscriber_id)
    if retry := _lock_retry_s(state["locked_until"], now):  # type: ignore[arg-type]
        return LoginResult(LoginOutcome.LOCKED, retry_after_s=retry)
    if not await verify_password(sub["portal_password_hash"], password):  # type: ignore[arg-type]
        await _portal_failure(conn, settings, subscriber_id, state, now)
        await audit.record(conn, audit.Actor("subscriber", code, address), "portal.login.failed", now)
        return LoginResult(LoginOutcome.REFUSED)
    return await _portal_success(conn, key, settings, sub, now, address, "password")


async def set_portal_password(
    conn: AsyncConnection, subscriber_id: int, password: str, *, password_hash: str | None = None
) -> None:
    """The subscriber's portal password (a credential: the web shell hashes it, billing keeps it on the registry's
    row)."""
    await set_portal_password_hash(conn, subscriber_id, password_hash or await hash_password(password))


@dataclass(frozen=True, slots=True)
class OneTimeCode:
    phone: str
    code: str  # six digits, to send by SMS


async def issue_one_time_code(
    conn: AsyncConnection, key: bytes, settings: WebSettings, code: str, now: datetime, address: str | None
) -> OneTimeCode | None:
    """A fresh sign-in code for the subscriber, or None (unknown code, no phone, locked) — the caller says
    the same to the visitor either way, so codes cannot be probed."""
    sub = await _subscriber_by_code(conn, code)
    if sub is None or not sub["phone"]:
        return None
    subscriber_id = int(sub["id"])  # type: ignore[call-overload]
    state = await _portal_state(conn, subscriber_id)
    if _lock_retry_s(state["locked_until"], now):  # type: ignore[arg-type]
        return None
    otp = f"{secrets.randbelow(1_000_000):06d}"
    await conn.execute(
        update(portal_logins)
        .where(portal_logins.c.subscriber_id == subscriber_id)
        .values(
            otp_hash=token_digest(key, f"{subscriber_id}:{otp}"),
            otp_expires_at=now + timedelta(seconds=settings.otp_ttl_s),
            otp_attempts=0,
        )
    )
    await audit.record(conn, audit.Actor("subscriber", code, address), "portal.otp.sent", now)
    return OneTimeCode(str(sub["phone"]), otp)


async def login_subscriber_with_code(
    conn: AsyncConnection, key: bytes, settings: WebSettings, code: str, otp: str, now: datetime, address: str | None
) -> LoginResult:
    sub = await _subscriber_by_code(conn, code)
    if sub is None:
        return LoginResult(LoginOutcome.REFUSED)
    subscriber_id = int(sub["id"])  # type: ignore[call-overload]
    state = await _portal_state(conn, subscriber_id)
    if retry := _lock_retry_s(state["locked_until"], now):  # type: ignore[arg-type]
        return LoginResult(LoginOutcome.LOCKED, retry_after_s=retry)
    expires = state["otp_expires_at"]
    valid = (
        state["otp_hash"] is not None
        and expires is not None
        and expires > now  # type: ignore[operator]
        and int(state["otp_attempts"]) < 5  # type: ignore[call-overload]
        and secrets.compare_digest(str(state["otp_hash"]), token_digest(key, f"{subscriber_id}:{otp.strip()}"))
    )
    if not valid:
        await conn.execute(
            update(portal_logins)
            .where(portal_logins.c.subscriber_id == subscriber_id)
            .values(otp_attempts=portal_logins.c.otp_attempts + 1)
        )
        await _portal_failure(conn, settings, subscriber_id, state, now)
        await audit.record(
            conn, audit.Actor("subscriber", code, address), "portal.login.failed", now, after={"via": "sms"}
        )
        return LoginResult(LoginOutcome.REFUSED)
    return await _portal_success(conn, key, settings, sub, now, address, "sms")
