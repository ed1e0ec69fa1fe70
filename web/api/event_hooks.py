"""/api/v1 for outbound event webhooks: subscriptions (URL, event kinds; the signing secret is answered once,
when the subscription is added or its secret rotated), deliveries with their attempts, and sending a dead
delivery again. Handlers parse, call one use case of `billing.event_hooks`, answer JSON."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from billing import event_hooks as hooks
from web.api.json import read_json, respond
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import paging, path_id
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


def _optional_string(body: dict[str, Any], name: str, max_length: int) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > max_length):
        raise InvalidInput(name, f"must be a string of at most {max_length} characters")
    return value


def _kinds(body: dict[str, Any], required: bool) -> list[str] | None:
    kinds = body.get("kinds")
    if kinds is None and not required:
        return None
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise InvalidInput("kinds", "must be a list of event kinds: reading, alarm, command, payment")
    return kinds


@requires("events.read")
async def list_subscriptions(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await hooks.list_subscriptions(conn)
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("events.read")
async def get_subscription(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        return respond(await hooks.get_subscription(conn, path_id(request, what="event subscription")))


@requires("events.manage")
async def create_subscription(request: web.Request) -> web.Response:
    body = await read_json(request)
    fields = hooks.SubscriptionFields(
        url=_optional_string(body, "url", 500) or "",
        kinds=_kinds(body, True) or [],
        description=_optional_string(body, "description", 200),
    )
    created = await hooks.create_subscription(
        uow_of(request), _actor(request), fields, request.app[CLOCK](), keys_of(request)
    )
    return respond(created, status=201)


@requires("events.manage")
async def rotate_secret(request: web.Request) -> web.Response:
    subscription_id = path_id(request, what="event subscription")
    body = await read_json(request) if request.can_read_body else {}
    hours = body.get("keep_previous_hours", 24)
    if not isinstance(hours, int) or isinstance(hours, bool):
        raise InvalidInput("keep_previous_hours", "must be a whole number of hours")
    rotated = await hooks.rotate_secret(
        uow_of(request),
        _actor(request),
        subscription_id,
        request.app[CLOCK](),
        keys_of(request),
        keep_previous=timedelta(hours=hours),
    )
    return respond(rotated)


@requires("events.manage")
async def change_subscription(request: web.Request) -> web.Response:
    subscription_id = path_id(request, what="event subscription")
    body = await read_json(request)
    active = body.get("active")
    if active is not None and not isinstance(active, bool):
        raise InvalidInput("active", "must be true or false")
    changed = await hooks.change_subscription(
        uow_of(request),
        _actor(request),
        subscription_id,
        request.app[CLOCK](),
        active=active,
        url=_optional_string(body, "url", 500),
        kinds=_kinds(body, False),
        description=_optional_string(body, "description", 200),
    )
    return respond(changed)


@requires("events.read")
async def list_deliveries(request: web.Request) -> web.Response:
    limit, offset = paging(request.query)
    state = request.query.get("state") or None
    sub = request.query.get("subscription_id")
    if sub is not None and not sub.isdigit():
        raise InvalidInput("subscription_id", "must be a subscription's id")
    async with uow_of(request).connect() as conn:
        items, total = await hooks.list_deliveries(
            conn, state=state, subscription_id=int(sub) if sub else None, limit=limit, offset=offset
        )
    return respond({"items": items, "total": total, "limit": limit, "offset": offset})


@requires("events.read")
async def get_delivery(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        return respond(await hooks.get_delivery(conn, path_id(request, what="event delivery")))


@requires("events.resend")
async def resend_delivery(request: web.Request) -> web.Response:
    delivery_id = path_id(request, what="event delivery")
    return respond(await hooks.resend_delivery(uow_of(request), _actor(request), delivery_id, request.app[CLOCK]()))


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/event-subscriptions", list_subscriptions)
    r.add_post(f"{PREFIX}/event-subscriptions", create_subscription)
    r.add_get(f"{PREFIX}/event-subscriptions/{{id}}", get_subscription)
    r.add_patch(f"{PREFIX}/event-subscriptions/{{id}}", change_subscription)
    r.add_post(f"{PREFIX}/event-subscriptions/{{id}}/rotate-secret", rotate_secret)
    r.add_get(f"{PREFIX}/event-deliveries", list_deliveries)
    r.add_get(f"{PREFIX}/event-deliveries/{{id}}", get_delivery)
    r.add_post(f"{PREFIX}/event-deliveries/{{id}}/resend", resend_delivery)
