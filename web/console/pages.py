"""Console pages: the start page, subscriber search and the subscriber card with live command states."""

from __future__ import annotations

from aiohttp import web

from web.errors import NotFound
from web.keys import CLOCK
from web.middleware import uow_of
from web.params import paging, path_id
from web.permissions import requires
from web.queries import lists, registry
from web.queries import sts as sts_queries
from web.render import render, translate_code


@requires("console.view")
async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console/subscribers")


@requires("subscribers.read")
async def subscribers(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()[:100]
    limit, offset = paging(request.query, 25)
    async with uow_of(request).connect() as conn:
        page = await registry.search_subscribers(
            conn, q, status=request.query.get("status") or None, limit=limit, offset=offset
        )
    return render(request, "console/subscribers.html", {"q": q, "page": page})


@requires("subscribers.read")
async def subscriber_card(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    async with uow_of(request).connect() as conn:
        card = await registry.subscriber_card(conn, subscriber_id)
        tariffs = await lists.tariffs_list(conn)
        pads = await sts_queries.keypads(conn, [m["id"] for m in card["meters"]]) if card else {}
    if card is None:
        raise NotFound("subscriber", subscriber_id)
    context = {"card": card, "tariffs": tariffs, "now": request.app[CLOCK](), "keypads": pads}
    return render(request, "console/subscriber.html", context)


@requires("commands.read")
async def subscriber_command_states(request: web.Request) -> web.Response:
    """The small JSON the card polls for live command states."""
    subscriber_id = path_id(request, what="subscriber")
    async with uow_of(request).connect() as conn:
        card = await registry.subscriber_card(conn, subscriber_id, limit=20)
    if card is None:
        raise NotFound("subscriber", subscriber_id)
    items = [
        {"id": c["id"], "state": c["state"], "label": translate_code(c["state"]), "kind": c["kind"]}
        for c in card["commands"]
    ]
    return web.json_response({"items": items})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/console", home)
    app.router.add_get("/console/subscribers", subscribers)
    app.router.add_get("/console/subscribers/{id}", subscriber_card)
    app.router.add_get("/console/subscribers/{id}/commands.json", subscriber_command_states)
