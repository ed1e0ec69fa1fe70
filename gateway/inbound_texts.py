"""Text SMS kept for self-service: the SMS to the short number from numbers that are not meters.

The inbound path writes each one (`text_rows`) in the transaction that recorded the batch it came in, so an
SMS the SMSC was told we have is never only in memory. A worker claims the unanswered ones (`claim_texts`:
a lease of `lease_s`, the attempt counted; several processes share one PostgreSQL database, `SKIP LOCKED`
keeps them apart, SQLite has one writer) and answers each; the answer's own transaction marks it handled
(`mark_handled`), so a text is answered once even when two workers or a restart meet it. One that fails
`max_attempts` times stays with its error and is no longer claimed (the worker logs it as given up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.ports import InboundSms
from store.schema.commands import inbound_texts

MAX_ATTEMPTS = 5

_t = inbound_texts.c


@dataclass(frozen=True, slots=True)
class PendingText:
    id: int
    sms: InboundSms
    attempts: int  # this claim included


def text_rows(texts: Sequence[InboundSms]) -> list[dict[str, Any]]:
    return [
        {
            "received_at": sms.received_at,
            "source": sms.source[:30],
            "destination": sms.destination[:30],
            "body": bytes(sms.body),
            "data_coding": sms.data_coding,
            "attempts": 0,
        }
        for sms in texts
    ]


def _claimable(now: datetime, max_attempts: int) -> Any:
    return (
        _t.handled_at.is_(None),
        _t.attempts < max_attempts,
        or_(_t.claimed_until.is_(None), _t.claimed_until < now),
    )


async def claim_texts(
    conn: AsyncConnection, now: datetime, *, lease_s: float = 60.0, limit: int = 50, max_attempts: int = MAX_ATTEMPTS
) -> list[PendingText]:
    """Lease up to `limit` unanswered texts, oldest first, until now + `lease_s`."""
    due = (
        select(_t.id)
        .where(*_claimable(now, max_attempts))
        .order_by(_t.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # SQLite renders no lock clause
    )
    ids = list((await conn.execute(due)).scalars())
    if not ids:
        return []
    rows = await conn.execute(
        update(inbound_texts)
        # the conditions again: a concurrent claim that committed first is seen here, and its rows are skipped
        .where(_t.id.in_(ids), *_claimable(now, max_attempts))
        .values(claimed_until=now + timedelta(seconds=lease_s), attempts=_t.attempts + 1)
        .returning(_t.id, _t.source, _t.destination, _t.body, _t.data_coding, _t.received_at, _t.attempts)
    )
    claimed = [
        PendingText(
            int(r.id),
            InboundSms(r.source, r.destination, bytes(r.body), False, int(r.data_coding), r.received_at),
            int(r.attempts),
        )
        for r in rows
    ]
    return sorted(claimed, key=lambda p: p.id)


async def mark_handled(conn: AsyncConnection, text_id: int, now: datetime) -> bool:
    """Mark a text answered, in the answer's transaction; False when it already was (answer nothing then)."""
    done = await conn.execute(
        update(inbound_texts)
        .where(_t.id == text_id, _t.handled_at.is_(None))
        .values(handled_at=now, claimed_until=None, error=None)
    )
    return done.rowcount == 1


async def record_failure(conn: AsyncConnection, text_id: int, error: str) -> None:
    """A failed answer keeps its error; it is tried again when its lease ends (up to the attempts allowed)."""
    await conn.execute(update(inbound_texts).where(_t.id == text_id, _t.handled_at.is_(None)).values(error=error[:200]))


__all__ = ["MAX_ATTEMPTS", "PendingText", "claim_texts", "mark_handled", "record_failure", "text_rows"]
