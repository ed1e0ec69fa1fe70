"""Console page of outbound event webhooks: the subscriptions (add one, give one a new secret, disable, enable),
the deliveries and their failures (filter by state), one delivery with its attempts, and sending a dead delivery
again. Each action parses the form, calls one use case of `billing.event_hooks`, redirects (adding a
subscription or rotating its secret shows the signing secret once instead)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from billing import event_hooks as hooks
from billing.rules.webhooks import KINDS
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import choice, paging, path_id, text
from web.permissions import requires
from web.render import render
from web.security import client_address

KEEP_PREVIOUS_HOURS = ("24", "0", "168")  # how long the secret replaced goes on signing: the form's choices


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


async def _context(
    request: web.Request, created: dict[str, Any] | None = None, *, rotated: dict[str, Any] | None = None
) -> dict[str, Any]:
    limit, offset = paging(request.query)
    state = choice(request.query, "state", ("", *hooks.STATES), "") or None
    async with uow_of(request).connect() as conn:
        subscriptions = await hooks.list_subscriptions(conn)
        items, total = await hooks.list_deliveries(conn, state=state, limit=limit, offset=offset)
    return {
        "subscriptions": subscriptions,
        "page": SimpleNamespace(items=items, total=total, limit=limit, offset=offset),
        "state": state or "",
        "states": hooks.STATES,
        "kinds": KINDS,
        "created": created,
        "rotated": rotated,
    }


@requires("events.read")
async def webhooks_page(request: web.Request) -> web.Response:
    return render(request, "console/webhooks.html", await _context(request))


@requires("events.manage")
async def create_subscription(request: web.Request) -> web.Response:
    form = await request.post()
    fields = hooks.SubscriptionFields(
        url=text(form, "url", max_length=500),
        kinds=[k for k in KINDS if form.get(f"kind_{k}") in ("1", "on", "true")],
        description=text(form, "description", required=False, max_length=200),
    )
    created = await hooks.create_subscription(
        uow_of(request), _actor(request), fields, request.app[CLOCK](), keys_of(request)
    )
    return render(request, "console/webhooks.html", await _context(request, created), status=201)


@requires("events.manage")
async def rotate_secret(request: web.Request) -> web.Response:
    subscription_id = path_id(request, what="event subscription")
    keep = choice(await request.post(), "keep_previous_hours", KEEP_PREVIOUS_HOURS)
    rotated = await hooks.rotate_secret(
        uow_of(request),
        _actor(request),
        subscription_id,
        request.app[CLOCK](),
        keys_of(request),
        keep_previous=timedelta(hours=int(keep)),
    )
    return render(request, "console/webhooks.html", await _context(request, rotated=rotated))


@requires("events.manage")
async def set_active(request: web.Request) -> web.Response:
    subscription_id = path_id(request, what="event subscription")
    active = (await request.post()).get("active") == "1"
    await hooks.change_subscription(
        uow_of(request), _actor(request), subscription_id, request.app[CLOCK](), active=active
    )
    raise web.HTTPSeeOther(f"/console/webhooks?ok={'webhook_enabled' if active else 'webhook_disabled'}")


@requires("events.read")
async def delivery_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        delivery = await hooks.get_delivery(conn, path_id(request, what="event delivery"))
    return render(request, "console/webhook_delivery.html", {"d": delivery})


@requires("events.resend")
async def resend(request: web.Request) -> web.Response:
    delivery_id = path_id(request, what="event delivery")
    await hooks.resend_delivery(uow_of(request), _actor(request), delivery_id, request.app[CLOCK]())
    raise web.HTTPSeeOther(f"/console/webhooks/deliveries/{delivery_id}?ok=webhook_resent")


@requires("events.resend")
async def resend_dead(request: web.Request) -> web.Response:
    await hooks.resend_dead(uow_of(request), _actor(request), request.app[CLOCK]())
    raise web.HTTPSeeOther("/console/webhooks?ok=webhook_resent_dead")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/webhooks", webhooks_page)
    r.add_post("/console/webhooks", create_subscription)
    r.add_post("/console/webhooks/resend-dead", resend_dead)
    r.add_post("/console/webhooks/{id}/active", set_active)
    r.add_post("/console/webhooks/{id}/rotate-secret", rotate_secret)
    r.add_get("/console/webhooks/deliveries/{id}", delivery_page)
    r.add_post("/console/webhooks/deliveries/{id}/resend", resend)
