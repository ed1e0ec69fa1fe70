"""/api/v1 for money decisions a person makes: payment conflicts (list, resolve by crediting or
dismissing), charges and adjustments (write-offs) on a subscriber's account, and the refund of a cash
payment. Handlers parse and call one use case of `billing.conflicts` or `billing.adjustments`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from billing import adjustments, conflicts
from billing.rules.ledger import Book, EntryType
from store.audit import Actor
from web.api.json import read_json, respond
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import paging, path_id
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"


def _actor(request: web.Request) -> Actor:
    return require_principal(request).actor(client_address(request))


def _int(body: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(name, "a whole number of minor units")
    return value


def _str(body: dict[str, Any], name: str, max_length: int = 500, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(name, f"a string of at most {max_length} characters")
    return value


def _request_id(request: web.Request) -> str:
    """An operation's one-time id: the `Idempotency-Key` header (a retry is the same posting), per caller."""
    key = request.headers.get("Idempotency-Key", "")
    if not 8 <= len(key) <= 100:
        raise InvalidInput("Idempotency-Key", "a header of 8-100 characters makes the request safe to retry")
    p = require_principal(request)
    return f"api:{p.kind}:{p.id}:{key}"


def posted_json(posted: adjustments.Posted) -> dict[str, Any]:
    return {
        "subscriber_id": posted.subscriber_id,
        "before": {"wallet_minor": posted.before.wallet.minor, "debt_minor": posted.before.debt.minor},
        "after": {"wallet_minor": posted.after.wallet.minor, "debt_minor": posted.after.debt.minor},
        "duplicate": posted.duplicate,
    }


@requires("payments.read")
async def conflict_list(request: web.Request) -> web.Response:
    limit, offset = paging(request.query)
    async with uow_of(request).connect() as conn:
        items, total = await conflicts.conflicts_page(
            conn, open_only=request.query.get("open") == "true", limit=limit, offset=offset
        )
    return respond({"items": items, "total": total, "limit": limit, "offset": offset})


@requires("payments.resolve")
async def resolve_conflict(request: web.Request) -> web.Response:
    conflict_id = path_id(request, what="payment conflict")
    body = await read_json(request)
    resolution = body.get("resolution")
    if resolution not in ("credit", "dismiss"):
        raise InvalidInput("resolution", "credit or dismiss")
    done = await conflicts.resolve_conflict(
        uow_of(request),
        _actor(request),
        conflict_id,
        conflicts.Resolution(resolution),
        request.app[CLOCK](),
        keys=keys_of(request),
        note=_str(body, "note"),
        subscriber_code=_str(body, "subscriber_code", 15, required=False) or None,
    )
    async with uow_of(request).connect() as conn:
        row = await conflicts.get_conflict(conn, conflict_id)
    return respond(
        {
            **dict(row._mapping),
            "command_id": done.command_id,
            "already_resolved": done.already,
        }
    )


async def _post_to_ledger(
    request: web.Request, field: str, choices: tuple[str, ...], post: Callable[..., Awaitable[Any]]
) -> web.Response:
    """A charge or an adjustment: `field` one of `choices`, `amount_minor`, `memo`, handed to `post`."""
    subscriber_id = path_id(request, what="subscriber")
    body = await read_json(request)
    choice = body.get(field)
    if choice not in choices:
        raise InvalidInput(field, " or ".join(choices))
    posted = await post(
        uow_of(request),
        _actor(request),
        subscriber_id,
        choice,
        _int(body, "amount_minor") or 0,
        _str(body, "memo"),
        request.app[CLOCK](),
        request_id=_request_id(request),
    )
    return respond(posted_json(posted), status=200 if posted.duplicate else 201)


@requires("ledger.charge")
async def charge(request: web.Request) -> web.Response:
    """`{"kind": "fixed_charge" | "penalty", "amount_minor", "memo"}` onto the debt."""
    return await _post_to_ledger(
        request,
        "kind",
        ("fixed_charge", "penalty"),
        lambda uow, actor, sid, kind, *rest, **kw: adjustments.charge(uow, actor, sid, EntryType(kind), *rest, **kw),
    )


@requires("ledger.adjust")
async def adjust(request: web.Request) -> web.Response:
    """`{"book": "wallet" | "debt", "amount_minor" (signed), "memo"}`; a positive debt amount writes debt off."""
    return await _post_to_ledger(
        request,
        "book",
        ("wallet", "debt"),
        lambda uow, actor, sid, book, *rest, **kw: adjustments.adjust(uow, actor, sid, Book(book), *rest, **kw),
    )


@requires("payments.refund")
async def refund(request: web.Request) -> web.Response:
    """`{"reason", "amount_minor" (default: all that is left)}` of a cash top-up."""
    topup_id = path_id(request, what="top-up")
    body = await read_json(request)
    result = await adjustments.refund_cash(
        uow_of(request),
        _actor(request),
        topup_id,
        request.app[CLOCK](),
        reason=_str(body, "reason"),
        request_id=_request_id(request),
        amount_minor=_int(body, "amount_minor", required=False),
    )
    return respond(
        {
            "topup_id": result.topup_id,
            "from_wallet_minor": result.from_wallet.minor,
            "to_debt_minor": result.to_debt.minor,
            "duplicate": result.duplicate,
        },
        status=200 if result.duplicate else 201,
    )


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/payment-conflicts", conflict_list)
    r.add_post(f"{PREFIX}/payment-conflicts/{{id}}/resolve", resolve_conflict)
    r.add_post(f"{PREFIX}/subscribers/{{id}}/charges", charge)
    r.add_post(f"{PREFIX}/subscribers/{{id}}/adjustments", adjust)
    r.add_post(f"{PREFIX}/topups/{{id}}/refund", refund)
