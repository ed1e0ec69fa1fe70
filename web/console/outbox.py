"""The simulated SMS network's outbox: every SMS the service sent to a person (sign-in codes, notices,
receipts) with its text and time, newest first; and a simulated handset that texts the short number from a
phone (a subscriber's keyword). There only when the transport is the simulator."""

from __future__ import annotations

from aiohttp import web

from web.errors import InvalidInput
from web.keys import SERVICES
from web.middleware import uow_of
from web.params import paging, text
from web.permissions import requires
from web.queries.outbox import outbox_of, sms_outbox_page
from web.render import render


@requires("sms_outbox.read")
async def sms_outbox(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()[:100]
    limit, offset = paging(request.query, 50)
    texts = outbox_of(request)()
    async with uow_of(request).connect() as conn:
        page = await sms_outbox_page(conn, texts, q=q, limit=limit, offset=offset)
    handset = request.app[SERVICES].handset is not None
    return render(request, "console/sms_outbox.html", {"q": q, "page": page, "handset": handset})


@requires("handset.send")
async def handset_send(request: web.Request) -> web.Response:
    handset = request.app[SERVICES].handset
    if handset is None:
        raise web.HTTPNotFound(text="the simulated SMS network is not running")
    form = await request.post()
    phone = text(form, "phone", max_length=20)
    if not phone.lstrip("+").isdigit():
        raise InvalidInput("phone", "digits, an optional leading +")
    handset(phone, text(form, "text", max_length=160))
    raise web.HTTPSeeOther(f"/console/sms-outbox?ok=handset_sent&q={phone.lstrip('+')}")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/console/sms-outbox", sms_outbox)
    app.router.add_post("/console/sms-outbox/handset", handset_send)
