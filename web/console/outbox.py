"""The simulated SMS network's outbox: every SMS the service sent to a person (sign-in codes, notices,
receipts) with its text and time, newest first. There only when the transport is the simulator."""

from __future__ import annotations

from aiohttp import web

from web.middleware import uow_of
from web.params import paging
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
    return render(request, "console/sms_outbox.html", {"q": q, "page": page})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/console/sms-outbox", sms_outbox)
