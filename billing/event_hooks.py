"""Who follows the head end by webhook, and what was delivered to them: subscriptions (a URL, its signing
secret, the event kinds it wants; each change audited), the deliveries and their attempts, and sending a
delivery again (a dead one, after the receiver is fixed). Delivery itself is `billing.event_delivery`.

A signing secret is shown once, when it is made (a new subscription, or a rotation), and kept only sealed under
the master key (`SecretBox`). A rotation may keep the secret it replaces signing beside the new one for a while
(every delivery then carries one `v1=` per secret), so the receiver can change over without losing one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import Conflict, InvalidField, NotFound
from billing.ports import SecretBox
from billing.rules.webhooks import new_secret, parse_kinds
from store import audit
from store.audit import Actor
from store.schema.events import event_attempts, event_deliveries, event_outbox, event_subscriptions
from store.uow import UnitOfWork

S, D, E, A = event_subscriptions.c, event_deliveries.c, event_outbox.c, event_attempts.c
STATES = ("pending", "delivered", "dead")
MAX_OVERLAP = timedelta(days=7)  # the longest a replaced secret may go on signing beside the new one


@dataclass(frozen=True, slots=True)
class SubscriptionFields:
    url: str
    kinds: Sequence[str] | str
    description: str | None = None


def _check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 500:
        raise InvalidField("url", "an http:// or https:// address of at most 500 characters")
    return url


def _kinds(kinds: Sequence[str] | str) -> str:
    try:
        return ",".join(parse_kinds(kinds if isinstance(kinds, str) else list(kinds)))
    except ValueError as exc:
        raise InvalidField("kinds", str(exc)) from None


def _subscription(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "url": row.url,
        "kinds": row.kinds.split(","),
        "description": row.description,
        "active": bool(row.active),
        "secret_hint": "…" + row.secret_hint,
        "previous_until": row.previous_until if row.previous_secret_sealed is not None else None,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _sealed(box: SecretBox, secret: str) -> dict[str, Any]:
    return {"secret": None, "secret_sealed": box.seal(secret.encode()), "secret_hint": secret[-4:]}


def _audited(sub: dict[str, Any]) -> dict[str, Any]:
    return {k: sub[k] for k in ("url", "kinds", "description", "active")}


async def list_subscriptions(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every subscription with its counts of deliveries by state."""
    counts: dict[int, dict[str, int]] = {}
    for row in await conn.execute(
        select(D.subscription_id, D.state, func.count()).group_by(D.subscription_id, D.state)
    ):
        counts.setdefault(int(row[0]), {})[str(row[1])] = int(row[2])
    return [
        {**_subscription(row), "deliveries": {s: counts.get(int(row.id), {}).get(s, 0) for s in STATES}}
        for row in await conn.execute(select(event_subscriptions).order_by(S.id))
    ]


async def get_subscription(conn: AsyncConnection, subscription_id: int) -> dict[str, Any]:
    row = (await conn.execute(select(event_subscriptions).where(S.id == subscription_id))).first()
    if row is None:
        raise NotFound("event subscription", subscription_id)
    return _subscription(row)


async def create_subscription(
    uow: UnitOfWork, actor: Actor, fields: SubscriptionFields, now: datetime, box: SecretBox
) -> dict[str, Any]:
    """A new subscription with a fresh secret, returned once with the secret (`secret`); stored sealed. Raises
    InvalidField."""
    values = {
        "url": _check_url(fields.url),
        "kinds": _kinds(fields.kinds),
        "description": (fields.description or "").strip()[:200] or None,
    }
    secret = new_secret()
    async with uow.begin() as conn:
        sub_id = await conn.scalar(
            insert(event_subscriptions)
            .values(**values, **_sealed(box, secret), active=1, created_by=str(actor), created_at=now, updated_at=now)
            .returning(S.id)
        )
        row = (await conn.execute(select(event_subscriptions).where(S.id == sub_id))).one()
        created = {**_subscription(row), "secret": secret}
        await audit.record(
            conn,
            actor,
            "event_subscription.create",
            now,
            target=f"event_subscription:{sub_id}",
            after=_audited(created),
        )
    return created


async def change_subscription(
    uow: UnitOfWork,
    actor: Actor,
    subscription_id: int,
    now: datetime,
    *,
    active: bool | None = None,
    url: str | None = None,
    kinds: Sequence[str] | str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Enable or disable a subscription, or change its URL, kinds or description (what is given). A disabled
    subscription gets no new deliveries and its pending ones wait. Raises NotFound, InvalidField."""
    values: dict[str, Any] = {}
    if active is not None:
        values["active"] = int(active)
    if url is not None:
        values["url"] = _check_url(url)
    if kinds is not None:
        values["kinds"] = _kinds(kinds)
    if description is not None:
        values["description"] = description.strip()[:200] or None
    async with uow.begin() as conn:
        before = await get_subscription(conn, subscription_id)
        if values:
            await conn.execute(
                update(event_subscriptions).where(S.id == subscription_id).values(**values, updated_at=now)
            )
        after = await get_subscription(conn, subscription_id)
        await audit.record(
            conn,
            actor,
            "event_subscription.update",
            now,
            target=f"event_subscription:{subscription_id}",
            before=_audited(before),
            after=_audited(after),
        )
    return after


async def rotate_secret(
    uow: UnitOfWork, actor: Actor, subscription_id: int, now: datetime, box: SecretBox, *, keep_previous: timedelta
) -> dict[str, Any]:
    """A new signing secret for a subscription, returned once (`secret`). The one it replaces goes on signing
    beside it for `keep_previous` (at most MAX_OVERLAP; zero: it stops at once), so the receiver can take the new
    one without refusing a delivery meanwhile. Audited (the hints, never the secrets). Raises NotFound,
    InvalidField."""
    if not timedelta(0) <= keep_previous <= MAX_OVERLAP:
        raise InvalidField("keep_previous_hours", f"0 to {int(MAX_OVERLAP.total_seconds() // 3600)} hours")
    secret = new_secret()
    async with uow.begin() as conn:
        row = (await conn.execute(select(event_subscriptions).where(S.id == subscription_id).with_for_update())).first()
        if row is None:
            raise NotFound("event subscription", subscription_id)
        current = row.secret_sealed if row.secret_sealed is not None else box.seal(str(row.secret).encode())
        keep = keep_previous > timedelta(0)
        await conn.execute(
            update(event_subscriptions)
            .where(S.id == subscription_id)
            .values(
                **_sealed(box, secret),
                previous_secret_sealed=current if keep else None,
                previous_until=now + keep_previous if keep else None,
                updated_at=now,
            )
        )
        after = _subscription((await conn.execute(select(event_subscriptions).where(S.id == subscription_id))).one())
        await audit.record(
            conn,
            actor,
            "event_subscription.rotate_secret",
            now,
            target=f"event_subscription:{subscription_id}",
            before={"secret_hint": "…" + row.secret_hint},
            after={
                "secret_hint": after["secret_hint"],
                "previous_until": after["previous_until"].isoformat() if after["previous_until"] else None,
            },
        )
    return {**after, "secret": secret}


async def seal_plain_secrets(conn: AsyncConnection, box: SecretBox) -> int:
    """Seal the plain secrets of subscriptions made before they were kept sealed (migration 0027 had no master
    key), on the caller's connection; how many."""
    rows = (await conn.execute(select(S.id, S.secret).where(S.secret.is_not(None)))).all()
    for row_id, secret in rows:
        await conn.execute(update(event_subscriptions).where(S.id == row_id).values(**_sealed(box, str(secret))))
    return len(rows)


def _delivery(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "subscription_id": int(row.subscription_id),
        "url": row.url,
        "event_id": row.event_id,
        "kind": row.kind,
        "occurred_at": row.occurred_at,
        "state": row.state,
        "attempts": int(row.attempts),
        "next_attempt_at": row.next_attempt_at,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "delivered_at": row.delivered_at,
        "created_at": row.created_at,
    }


def _deliveries_query() -> Any:
    return select(
        D.id,
        D.subscription_id,
        S.url,
        E.event_id,
        E.kind,
        E.occurred_at,
        D.state,
        D.attempts,
        D.next_attempt_at,
        D.last_status,
        D.last_error,
        D.delivered_at,
        D.created_at,
    ).select_from(event_deliveries.join(event_outbox, E.id == D.event_row_id).join(event_subscriptions))


async def list_deliveries(
    conn: AsyncConnection,
    *,
    state: str | None = None,
    subscription_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """The deliveries, newest first, and their total; filtered by state and subscription. Raises InvalidField."""
    if state is not None and state not in STATES:
        raise InvalidField("state", f"one of {', '.join(STATES)}")
    where = []
    if state is not None:
        where.append(D.state == state)
    if subscription_id is not None:
        where.append(D.subscription_id == subscription_id)
    total = await conn.scalar(select(func.count()).select_from(event_deliveries).where(*where))
    rows = await conn.execute(_deliveries_query().where(*where).order_by(D.id.desc()).limit(limit).offset(offset))
    return [_delivery(r) for r in rows], int(total or 0)


async def get_delivery(conn: AsyncConnection, delivery_id: int) -> dict[str, Any]:
    """One delivery with its event's payload and every attempt. Raises NotFound."""
    row = (await conn.execute(_deliveries_query().add_columns(E.payload).where(D.id == delivery_id))).first()
    if row is None:
        raise NotFound("event delivery", delivery_id)
    attempts = await conn.execute(
        select(A.at, A.status, A.error, A.duration_ms).where(A.delivery_id == delivery_id).order_by(A.id)
    )
    return {
        **_delivery(row),
        "data": row.payload,
        "attempt_log": [
            {"at": a.at, "status": a.status, "error": a.error, "duration_ms": int(a.duration_ms)} for a in attempts
        ],
    }


async def resend_delivery(uow: UnitOfWork, actor: Actor, delivery_id: int, now: datetime) -> dict[str, Any]:
    """Send a dead (or delivered) delivery again, with a fresh series of attempts; the event id stays the same,
    so a receiver that had it deduplicates. Audited. Raises NotFound, Conflict (it is still pending)."""
    async with uow.begin() as conn:
        before = await get_delivery(conn, delivery_id)
        if before["state"] == "pending":
            raise Conflict("event delivery", "it is still being delivered")
        await conn.execute(
            update(event_deliveries)
            .where(D.id == delivery_id)
            .values(state="pending", attempts=0, next_attempt_at=now, claimed_until=None, updated_at=now)
        )
        await audit.record(
            conn,
            actor,
            "event_delivery.resend",
            now,
            target=f"event_delivery:{delivery_id}",
            before={"state": before["state"], "attempts": before["attempts"], "event_id": before["event_id"]},
            after={"state": "pending"},
        )
        return await get_delivery(conn, delivery_id)


async def resend_dead(uow: UnitOfWork, actor: Actor, now: datetime, subscription_id: int | None = None) -> int:
    """Send every dead delivery again (of one subscription, or all), e.g. once a receiver that was down is back:
    one audit row with the count. How many."""
    where = [D.state == "dead"]
    if subscription_id is not None:
        where.append(D.subscription_id == subscription_id)
    async with uow.begin() as conn:
        moved = await conn.execute(
            update(event_deliveries)
            .where(*where)
            .values(state="pending", attempts=0, next_attempt_at=now, claimed_until=None, updated_at=now)
        )
        count = int(moved.rowcount or 0)
        if count:
            await audit.record(
                conn,
                actor,
                "event_delivery.resend",
                now,
                target=f"event_subscription:{subscription_id}" if subscription_id else "event_deliveries",
                before={"state": "dead"},
                after={"state": "pending", "deliveries": count},
            )
    return count
