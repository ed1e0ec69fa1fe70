"""The simulated network's SMS outbox as a page: the texts it took for people (from `web.keys.SmsOutbox`),
each with the subscriber whose phone it went to, filtered and paged, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.sms_text import SentText
from store.schema.registry import subscribers
from web.errors import NotFound
from web.keys import SERVICES, SmsOutbox
from web.queries import Page


def outbox_of(request: web.Request) -> SmsOutbox:
    outbox = request.app[SERVICES].sms_outbox
    if outbox is None:
        raise NotFound("SMS outbox", "here: the transport is not the simulated SMS network")
    return outbox


def _digits(phone: str | None) -> str:
    return "".join(ch for ch in phone or "" if ch.isdigit())


async def sms_outbox_page(
    conn: AsyncConnection, texts: Sequence[SentText], *, q: str = "", limit: int = 50, offset: int = 0
) -> Page:
    """`q`: part of the phone number, the subscriber's code or name, or the text."""
    phones = sorted({t.to for t in texts})
    owners: dict[str, dict[str, Any]] = {}
    for start in range(0, len(phones), 500):  # the phones are stored with or without the "+"
        chunk = phones[start : start + 500]
        rows = await conn.execute(
            select(subscribers.c.id, subscribers.c.code, subscribers.c.name, subscribers.c.phone).where(
                or_(subscribers.c.phone.in_(chunk), subscribers.c.phone.in_(["+" + p for p in chunk]))
            )
        )
        for row in rows:
            owners.setdefault(_digits(row.phone), {"id": row.id, "code": row.code, "name": row.name})
    needle = q.strip().casefold()
    items = []
    for text in texts:
        owner = owners.get(text.to)
        haystack = " ".join([text.to, text.text, owner["code"], owner["name"]] if owner else [text.to, text.text])
        if needle and needle not in haystack.casefold():
            continue
        items.append(
            {
                "to": text.to,
                "text": text.text,
                "sent_at": text.sent_at,
                "parts": text.parts,
                "complete": text.complete,
                "lost": text.lost,
                "subscriber": owner,
            }
        )
    return Page(items[offset : offset + limit], len(items), limit, offset)
