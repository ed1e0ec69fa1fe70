"""Console pages for money decisions: the payment conflicts (both sides shown; credit or dismiss with a
note), and on the subscriber card a charge, an adjustment or write-off, and the refund of a cash payment.
Each handler parses the form and calls one use case of `billing.conflicts` or `billing.adjustments`."""

from __future__ import annotations

from aiohttp import web

from billing import adjustments, conflicts
from billing.rules.ledger import Book, EntryType
from store.audit import Actor
from web.console.actions import _request_id
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import amount_minor, choice, paging, path_id, text
from web.permissions import requires
from web.render import render
from web.security import client_address


def _actor(request: web.Request) -> Actor:
    return require_principal(request).actor(client_address(request))


@requires("payments.read")
async def conflicts_page(request: web.Request) -> web.Response:
    open_only = request.query.get("open", "true") == "true"
    limit, offset = paging(request.query, 25)
    async with uow_of(request).connect() as conn:
        items, total = await conflicts.conflicts_page(conn, open_only=open_only, limit=limit, offset=offset)
    return render(request, "console/payment_conflicts.html", {"items": items, "total": total, "open_only": open_only})


@requires("payments.resolve")
async def resolve_conflict(request: web.Request) -> web.Response:
    conflict_id = path_id(request, what="payment conflict")
    form = await request.post()
    resolution = conflicts.Resolution(choice(form, "resolution", ("credit", "dismiss")))
    await conflicts.resolve_conflict(
        uow_of(request),
        _actor(request),
        conflict_id,
        resolution,
        request.app[CLOCK](),
        keys=keys_of(request),
        note=text(form, "note", max_length=500),
        subscriber_code=text(form, "subscriber_code", required=False, max_length=20).replace(" ", "") or None,
    )
    raise web.HTTPSeeOther(f"/console/payment-conflicts?ok=conflict_{resolution.value}")


@requires("ledger.charge")
async def charge(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    form = await request.post()
    await adjustments.charge(
        uow_of(request),
        _actor(request),
        subscriber_id,
        EntryType(choice(form, "kind", ("fixed_charge", "penalty"))),
        amount_minor(form, "amount"),
        text(form, "memo", max_length=500),
        request.app[CLOCK](),
        request_id=f"web:{_request_id(form)}",
    )
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=charged")


@requires("ledger.adjust")
async def adjust(request: web.Request) -> web.Response:
    """`write_off` forgives debt; `credit` / `debit` correct the wallet."""
    subscriber_id = path_id(request, what="subscriber")
    form = await request.post()
    what = choice(form, "what", ("write_off", "credit", "debit"))
    amount = amount_minor(form, "amount")
    book, signed = {
        "write_off": (Book.DEBT, amount),
        "credit": (Book.WALLET, amount),
        "debit": (Book.WALLET, -amount),
    }[what]
    await adjustments.adjust(
        uow_of(request),
        _actor(request),
        subscriber_id,
        book,
        signed,
        text(form, "memo", max_length=500),
        request.app[CLOCK](),
        request_id=f"web:{_request_id(form)}",
    )
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=adjusted")


@requires("payments.refund")
async def refund(request: web.Request) -> web.Response:
    topup_id = path_id(request, what="top-up")
    form = await request.post()
    raw = text(form, "amount", required=False, max_length=20)
    result = await adjustments.refund_cash(
        uow_of(request),
        _actor(request),
        topup_id,
        request.app[CLOCK](),
        reason=text(form, "reason", max_length=500),
        request_id=f"web:{_request_id(form)}",
        amount_minor=amount_minor(form, "amount") if raw else None,
    )
    subscriber_id = form.get("subscriber_id")
    if not isinstance(subscriber_id, str) or not subscriber_id.isdigit():
        raise InvalidInput("subscriber_id", "the form is incomplete; reload the page")
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=refunded&topup={result.topup_id}")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/payment-conflicts", conflicts_page)
    r.add_post("/console/payment-conflicts/{id}/resolve", resolve_conflict)
    r.add_post("/console/subscribers/{id}/charge", charge)
    r.add_post("/console/subscribers/{id}/adjust", adjust)
    r.add_post("/console/topups/{id}/refund", refund)
