"""The lists both the console and the API page through, parsed in one place: paging (`limit`, `offset`),
the time range (`since`, `until`, ISO 8601 with a zone) and each list's exact-match filters from the
query string, then the list's one query in `web/queries/lists.py`. The console renders the page, the API
answers it as JSON; neither parses a filter of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from web.api.json import parse_time
from web.middleware import uow_of
from web.params import bounded_int, paging
from web.queries import Page
from web.queries import lists as queries


@dataclass(frozen=True, slots=True)
class Listing:
    query: Callable[..., Awaitable[Page]]
    texts: tuple[str, ...] = ()  # exact-match filters, by the query function's keyword
    ids: tuple[str, ...] = ()  # filters by a record id (a positive integer)
    flags: Mapping[str, str] = field(default_factory=dict)  # keyword → query-string name; true when "true"


LISTINGS: Mapping[str, Listing] = {
    "commands": Listing(queries.commands_page, texts=("state", "kind"), ids=("meter_id",)),
    "payments": Listing(queries.payments_page, texts=("status", "provider"), ids=("subscriber_id",)),
    "notices": Listing(queries.notices_page, texts=("status", "channel"), ids=("subscriber_id",)),
    "wrong_sms": Listing(queries.wrong_sms_page, texts=("reason", "source")),
    "alarms": Listing(queries.alarms_page, texts=("kind",), ids=("meter_id",), flags={"open_only": "open"}),
    "audit": Listing(queries.audit_page, texts=("actor", "action")),
}


def optional_id(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    return None if raw in (None, "") else bounded_int(query, name, 0, 1, 10**18)


def filters(name: str, query: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of list `name`'s query (without paging). Raises InvalidInput."""
    spec = LISTINGS[name]
    out: dict[str, Any] = {f: (query.get(f) or None) for f in spec.texts}
    out.update({f: optional_id(query, f) for f in spec.ids})
    out.update({keyword: query.get(param) == "true" for keyword, param in spec.flags.items()})
    out.update(since=parse_time(query, "since"), until=parse_time(query, "until"))
    return out


async def list_page(request: web.Request, name: str) -> Page:
    """One page of list `name` as the request's query string asks. Raises InvalidInput."""
    limit, offset = paging(request.query)
    arguments = filters(name, request.query)
    async with uow_of(request).connect() as conn:
        return await LISTINGS[name].query(conn, **arguments, limit=limit, offset=offset)
