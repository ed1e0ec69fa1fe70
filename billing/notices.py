"""Notices to subscribers by SMS (text from the short number, GSM-7 or UCS-2) and e-mail.

Each notice is a row (queued -> sending -> sent | failed) whose `cause_key` is unique: queueing the same
cause twice is a no-op, and a row is claimed (committed as `sending`) before it is handed to a sender,
so no cause is ever sent twice — a crash mid-send leaves it visible in `sending` instead of resending it.
Failures are retried with a backoff, then the row is `failed`.

Senders are small Protocols wired by the composition root: `TextSender` (the SMS transport) and
`EmailSender` (aiosmtplib, below). Every attempt is reported to the `telemetry.Observer` as
`notice_sent(channel, "sent" | "failed")`; a failed attempt may be retried, the row says when it gave up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.rules.notices import NoticeKind, notice_text
from store.schema.notices import notices as N  # noqa: N812
from store.sql import insert_ignoring_duplicates
from store.uow import UnitOfWork
from telemetry import NO_METRICS, UNWATCHED, JobProgress, Observer

log = logging.getLogger("smsmeter.billing.notices")

MAX_ATTEMPTS = 3
RETRY_BASE_S = 300.0


class TextSender(Protocol):
    async def send_text(self, msisdn: str, text: str) -> None:
        """Send a text SMS from the short number. Raises on failure."""


class EmailSender(Protocol):
    async def send_email(
        self, to: str, subject: str, body: str, attachments: Sequence[tuple[str, bytes, str]] = ()
    ) -> None:
        """Send one e-mail; `attachments` are (file name, bytes, MIME type). Raises on failure."""


@dataclass(frozen=True, slots=True)
class Recipient:
    subscriber_id: int
    code: str
    language: str
    phone: str | None
    email: str | None


def notice_rows(
    recipient: Recipient, kind: NoticeKind, cause: str, *, utility: str, amount: str, now: datetime
) -> list[dict[str, Any]]:
    """One row per channel the subscriber has (SMS to the phone, e-mail to the address)."""
    subject, body = notice_text(kind, recipient.language, utility=utility, code=recipient.code, amount=amount)
    rows = []
    for channel, address in (("sms", recipient.phone), ("email", recipient.email)):
        if address:
            rows.append(
                {
                    "subscriber_id": recipient.subscriber_id,
                    "channel": channel,
                    "stage": kind.value,
                    "cause_key": f"{cause}:{channel}"[:200],
                    "status": "queued",
                    "subject": subject,
                    "body": body,
                    "created_at": now,
                    "recipient": address,
                    "language": recipient.language,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
            )
    return rows


async def queue_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert_ignoring_duplicates(N, ["cause_key"], conn), list(rows))


async def queue_notice(
    conn: AsyncConnection,
    recipient: Recipient,
    kind: NoticeKind,
    cause: str,
    *,
    utility: str,
    amount: str,
    now: datetime,
) -> None:
    """Queue the notice for `cause` (once per cause and channel, whatever is called again)."""
    await queue_rows(conn, notice_rows(recipient, kind, cause, utility=utility, amount=amount, now=now))


@dataclass(frozen=True, slots=True)
class SendReport:
    sent: int
    failed: int
    retried: int
    skipped: int  # no sender for the channel


async def send_due_notices(
    uow: UnitOfWork,
    now: datetime,
    *,
    sms: TextSender | None,
    email: EmailSender | None,
    batch: int = 200,
    observer: Observer = NO_METRICS,
    progress: JobProgress = UNWATCHED,
    ids: Sequence[int] | None = None,
) -> SendReport:
    """Claim due queued notices (only those of `ids` when given), send them, record the outcome. Channels
    without a sender stay queued."""
    channels = [c for c, s in (("sms", sms), ("email", email)) if s is not None]
    if not channels:
        return SendReport(0, 0, 0, 0)
    async with uow.begin() as conn:
        stmt = (
            select(N.c.id, N.c.channel, N.c.recipient, N.c.subject, N.c.body, N.c.attempts)
            .where(
                N.c.status == "queued",
                N.c.channel.in_(channels),
                or_(N.c.next_attempt_at.is_(None), N.c.next_attempt_at <= now),
                *(() if ids is None else (N.c.id.in_(list(ids)),)),
            )
            .order_by(N.c.id)
            .limit(batch)
            .with_for_update(skip_locked=True)  # two senders never claim the same row (SQLite has one writer)
        )
        claimed = (await conn.execute(stmt)).all()
        if claimed:
            await conn.execute(
                update(N).where(N.c.id.in_([r.id for r in claimed])).values(status="sending", attempts=N.c.attempts + 1)
            )
    sent = failed = retried = 0
    for index, row in enumerate(claimed):
        if progress.stop_requested:  # the service is stopping: what is not sent yet goes back to the queue
            async with uow.begin() as conn:
                await conn.execute(
                    update(N)
                    .where(N.c.id.in_([r.id for r in claimed[index:]]))
                    .values(status="queued", attempts=N.c.attempts - 1)
                )
            break
        try:
            if row.channel == "sms":
                assert sms is not None
                await sms.send_text(row.recipient, row.body)
            else:
                assert email is not None
                await email.send_email(row.recipient, row.subject or "", row.body)
        except Exception as exc:  # any sender failure is recorded on the row, never lost
            observer.notice_sent(row.channel, "failed")
            attempts = row.attempts + 1
            final = attempts >= MAX_ATTEMPTS
            log.warning(
                "notice %s by %s to %s failed (attempt %s): %s", row.id, row.channel, row.recipient, attempts, exc
            )
            async with uow.begin() as conn:
                await conn.execute(
                    update(N)
                    .where(N.c.id == row.id)
                    .values(
                        status="failed" if final else "queued",
                        error=f"{type(exc).__name__}: {exc}"[:500],
                        next_attempt_at=None if final else now + timedelta(seconds=RETRY_BASE_S * 2 ** (attempts - 1)),
                    )
                )
            failed += final
            retried += not final
            continue
        async with uow.begin() as conn:
            await conn.execute(update(N).where(N.c.id == row.id).values(status="sent", sent_at=now, error=None))
        observer.notice_sent(row.channel, "sent")
        progress.advanced(1)
        sent += 1
    return SendReport(sent, failed, retried, 0)


async def notices_of(conn: AsyncConnection, subscriber_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = await conn.execute(select(N).where(N.c.subscriber_id == subscriber_id).order_by(N.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


class SmtpEmailSender:
    """E-mail over SMTP with aiosmtplib: one connection per message, a timeout on every step."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 30.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password = username or None, password or None
        self.starttls, self.timeout_s = starttls, timeout_s

    async def send_email(
        self, to: str, subject: str, body: str, attachments: Sequence[tuple[str, bytes, str]] = ()
    ) -> None:
        import aiosmtplib

        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        for name, data, mime in attachments:
            maintype, subtype = mime.split("/", 1)
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.starttls,
            timeout=self.timeout_s,
        )
