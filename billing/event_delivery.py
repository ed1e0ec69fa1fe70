"""Delivering the event outbox to its subscribers: signed POSTs, retried with exponential backoff, then dead.

One run (`deliver_events`, a scheduled job): (1) fan out — every event not fanned out yet gets one delivery
row per active subscription that wants its kind (a subscription hears of events written after it was
added); (2) claim the deliveries that are due (a lease, `claimed_until`, so two schedulers never post the same
one at once; `FOR UPDATE SKIP LOCKED` on PostgreSQL); (3) POST each, at most `parallel` at once, through the
`Poster` port; (4) record every attempt (`event_attempts`) and its outcome in one transaction: a 2xx answer is
`delivered`; anything else (another status, no answer, a timeout) is tried again after `retry_base_s`,
doubling up to `retry_max_s`, and after `max_attempts` the delivery is `dead`, shown in the console for a
person to send again. Delivery is at least once: a crash between the POST and its record sends it again,
with the same event id. The body and signature are `billing.rules.webhooks`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.event_hooks import seal_plain_secrets
from billing.ports import SecretBox
from billing.rules.webhooks import (
    EVENT_ID_HEADER,
    EVENT_KIND_HEADER,
    SIGNATURE_HEADER,
    body,
    next_attempt,
    signature,
)
from store.errors import KeyUnwrapError
from store.schema.events import event_attempts, event_deliveries, event_outbox, event_subscriptions
from store.sql import insert_ignoring_duplicates
from store.uow import UnitOfWork
from telemetry import UNWATCHED, JobProgress

log = logging.getLogger("smsmeter.billing.events")

S, D, E = event_subscriptions.c, event_deliveries.c, event_outbox.c


class DeliveryFailed(Exception):
    """The receiver did not answer (refused, reset, timed out); `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Poster(Protocol):
    async def post(self, url: str, payload: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
        """POST `payload`; the HTTP status of the answer. Raises DeliveryFailed when there is none."""


class AiohttpPoster:
    """Posts with one aiohttp client session (opened on first use; `close` it at shutdown)."""

    def __init__(self) -> None:
        self._session: Any = None

    async def post(self, url: str, payload: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "smsmeter-webhooks"})
        try:
            async with self._session.post(
                url, data=payload, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                await response.read()
                return int(response.status)
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:300]) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 8
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    timeout_s: float = 10.0
    lease_s: float = 60.0
    batch: int = 200
    parallel: int = 16
    keep_days: int = 30  # events (and their deliveries and attempts) older than this are removed once settled


@dataclass
class DeliveryReport:
    fanned_out: int = 0
    delivered: int = 0
    failed: int = 0  # attempts that failed and will be tried again
    dead: int = 0
    pruned: int = 0  # old events removed


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery_id: int
    attempts: int
    url: str
    secrets: tuple[str, ...]  # the current secret, then one a rotation keeps signing for a while; none: unsealed
    event_id: str
    kind: str
    occurred_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Outcome:
    claimed: _Claimed
    at: datetime
    status: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def _fan_out(conn: AsyncConnection, now: datetime, batch: int = 1000) -> int:
    """Deliveries for up to `batch` events not fanned out yet; the number of events taken."""
    events = (
        await conn.execute(
            select(E.id, E.kind, E.created_at)
            .where(E.fanned_out_at.is_(None))
            .order_by(E.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not events:
        return 0
    subscriptions = (await conn.execute(select(S.id, S.kinds, S.created_at).where(S.active == 1))).all()
    rows = [
        {
            "event_row_id": e.id,
            "subscription_id": s.id,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for e in events
        for s in subscriptions
        if e.kind in s.kinds.split(",") and e.created_at >= s.created_at
    ]
    if rows:
        await conn.execute(
            insert_ignoring_duplicates(event_deliveries, ["event_row_id", "subscription_id"], conn), rows
        )
    await conn.execute(update(event_outbox).where(E.id.in_([e.id for e in events])).values(fanned_out_at=now))
    return len(events)


async def _claim(conn: AsyncConnection, now: datetime, policy: DeliveryPolicy, box: SecretBox) -> list[_Claimed]:
    due = (
        await conn.execute(
            select(D.id)
            .select_from(event_deliveries.join(event_subscriptions))
            .where(
                D.state == "pending",
                D.next_attempt_at <= now,
                or_(D.claimed_until.is_(None), D.claimed_until < now),
                S.active == 1,
            )
            .order_by(D.next_attempt_at, D.id)
            .limit(policy.batch)
            .with_for_update(of=event_deliveries, skip_locked=True)
        )
    ).all()
    ids = [int(r.id) for r in due]
    if not ids:
        return []
    await conn.execute(
        update(event_deliveries)
        .where(D.id.in_(ids))
        .values(claimed_until=now + timedelta(seconds=policy.lease_s), updated_at=now)
    )
    rows = await conn.execute(
        select(
            D.id,
            D.attempts,
            D.subscription_id,
            S.url,
            S.secret_sealed,
            S.previous_secret_sealed,
            S.previous_until,
            E.event_id,
            E.kind,
            E.occurred_at,
            E.payload,
        )
        .select_from(event_deliveries.join(event_subscriptions).join(event_outbox, E.id == D.event_row_id))
        .where(D.id.in_(ids))
        .order_by(D.id)
    )
    opened: dict[int, tuple[str, ...]] = {}
    claimed = []
    for r in rows:
        if r.subscription_id not in opened:
            opened[r.subscription_id] = _secrets(box, r, now)
        secrets = opened[r.subscription_id]
        claimed.append(
            _Claimed(int(r.id), int(r.attempts), r.url, secrets, r.event_id, r.kind, r.occurred_at, dict(r.payload))
        )
    return claimed


def _secrets(box: SecretBox, row: Any, now: datetime) -> tuple[str, ...]:
    """The secrets a subscription's deliveries are signed with now; none when they do not unseal (the master key
    is not the one they were sealed under), which fails the attempt rather than sending it unsigned."""
    sealed = [row.secret_sealed]
    if row.previous_secret_sealed is not None and row.previous_until is not None and row.previous_until > now:
        sealed.append(row.previous_secret_sealed)
    try:
        return tuple(box.unseal(s).decode() for s in sealed if s is not None)
    except KeyUnwrapError:
        log.error("event subscription %s: its secret does not unseal under this master key", row.subscription_id)
        return ()


async def _post(poster: Poster, item: _Claimed, now: datetime, timeout_s: float) -> _Outcome:
    if not item.secrets:
        return _Outcome(item, now, None, "the subscription's secret does not unseal under this master key", 0)
    payload = body(item.event_id, item.kind, item.occurred_at, item.payload)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(item.secrets, int(now.timestamp()), payload),
        EVENT_ID_HEADER: item.event_id,
        EVENT_KIND_HEADER: item.kind,
    }
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        status = await poster.post(item.url, payload, headers, timeout_s)
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except DeliveryFailed as exc:
        error = exc.reason
    return _Outcome(item, now, status, error, int((time.monotonic() - started) * 1000))


async def _record(
    conn: AsyncConnection, outcomes: Sequence[_Outcome], policy: DeliveryPolicy, report: DeliveryReport
) -> None:
    await conn.execute(
        insert(event_attempts),
        [
            {
                "delivery_id": o.claimed.delivery_id,
                "at": o.at,
                "status": o.status,
                "error": o.error,
                "duration_ms": o.duration_ms,
            }
            for o in outcomes
        ],
    )
    for o in outcomes:
        attempts = o.claimed.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status": o.status,
            "last_error": o.error,
            "claimed_until": None,
            "updated_at": o.at,
        }
        if o.ok:
            values |= {"state": "delivered", "delivered_at": o.at, "next_attempt_at": None}
            report.delivered += 1
        elif attempts >= policy.max_attempts:
            values |= {"state": "dead", "next_attempt_at": None}
            report.dead += 1
            log.warning(
                "event %s to %s is dead after %d attempts: %s", o.claimed.event_id, o.claimed.url, attempts, o.error
            )
        else:
            values["next_attempt_at"] = next_attempt(
                attempts, o.at, base_s=policy.retry_base_s, max_s=policy.retry_max_s
            )
            report.failed += 1
        # only the claim this run made: a resend in the meantime started a new series
        await conn.execute(
            update(event_deliveries)
            .where(and_(D.id == o.claimed.delivery_id, D.state == "pending", D.attempts == o.claimed.attempts))
            .values(**values)
        )


async def _prune_events(conn: AsyncConnection, now: datetime, keep_days: int, batch: int = 1000) -> int:
    """Remove up to `batch` events older than `keep_days` that are fanned out and have no pending delivery,
    with their deliveries and attempts (a dead one is kept as long: a person may still send it again)."""
    pending = exists().where(D.event_row_id == E.id, D.state == "pending")
    ids = (
        await conn.scalars(
            select(E.id)
            .where(E.fanned_out_at.is_not(None), E.created_at < now - timedelta(days=keep_days), ~pending)
            .order_by(E.id)
            .limit(batch)
        )
    ).all()
    if not ids:
        return 0
    deliveries = select(D.id).where(D.event_row_id.in_(ids)).scalar_subquery()
    await conn.execute(delete(event_attempts).where(event_attempts.c.delivery_id.in_(deliveries)))
    await conn.execute(delete(event_deliveries).where(D.event_row_id.in_(ids)))
    await conn.execute(delete(event_outbox).where(E.id.in_(ids)))
    return len(ids)


async def deliver_events(
    uow: UnitOfWork,
    poster: Poster,
    now: datetime,
    box: SecretBox,
    policy: DeliveryPolicy = DeliveryPolicy(),
    progress: JobProgress = UNWATCHED,
) -> DeliveryReport:
    """Seal any plain secret left from before they were sealed, fan out new events, then post every due
    delivery (batch by batch until none is due), signed with the secrets `box` unseals."""
    report = DeliveryReport()
    async with uow.begin() as conn:
        if sealed := await seal_plain_secrets(conn, box):
            log.info("event webhooks: %d plain signing secrets sealed under the master key", sealed)
    while not progress.stop_requested:
        async with uow.begin() as conn:
            taken = await _fan_out(conn, now)
        report.fanned_out += taken
        if taken < 1000:
            break
    limit = asyncio.Semaphore(policy.parallel)

    async def post(item: _Claimed) -> _Outcome:
        async with limit:
            return await _post(poster, item, now, policy.timeout_s)

    while not progress.stop_requested:
        async with uow.begin() as conn:
            claimed = await _claim(conn, now, policy, box)
        if not claimed:
            break
        outcomes = await asyncio.gather(*(post(item) for item in claimed))
        async with uow.begin() as conn:
            await _record(conn, outcomes, policy, report)
        progress.advanced(len(outcomes))
        if len(claimed) < policy.batch:
            break
    while not progress.stop_requested:
        async with uow.begin() as conn:
            removed = await _prune_events(conn, now, policy.keep_days)
        report.pruned += removed
        if removed < 1000:
            break
    return report
