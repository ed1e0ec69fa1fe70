"""`GET /api/v1/sms-outbox`: the simulated SMS network's texts to people (sign-in codes, notices, receipts),
newest first, for scripts and tests that run against the demo (404 with a real SMSC)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from web.api.json import respond
from web.api.openapi import _INT, _PAGING, _STR, _TIME, _obj, _ok, _page_of, _problem, _q
from web.middleware import uow_of
from web.params import paging
from web.permissions import requires
from web.queries.outbox import outbox_of, sms_outbox_page

PATH = "/api/v1/sms-outbox"


@requires("sms_outbox.read")
async def sms_outbox(request: web.Request) -> web.Response:
    limit, offset = paging(request.query)
    texts = outbox_of(request)()
    async with uow_of(request).connect() as conn:
        page = await sms_outbox_page(conn, texts, q=request.query.get("q", "")[:100], limit=limit, offset=offset)
    return respond(page.as_json())


SCHEMAS: dict[str, Any] = {
    "SentSms": _obj(
        to={**_STR, "description": "the phone number, digits"},
        text=_STR,
        sent_at=_TIME,
        parts={**_INT, "description": "SMS parts the network took (a long text: several)"},
        complete={"type": "boolean", "description": "every part of a long text was taken"},
        lost={"type": "boolean", "description": "the simulated network lost a part"},
        subscriber={
            "type": ["object", "null"],
            "description": "the subscriber with this phone number",
            "properties": {"id": _INT, "code": _STR, "name": _STR},
        },
    )
}

PATHS: dict[str, Any] = {
    PATH: {
        "get": {
            "operationId": "listSmsOutbox",
            "summary": "The simulated SMS network's outbox: every SMS sent to a person, newest first",
            "description": "Only with the simulated SMS network (transport = simulator); 404 otherwise.",
            "tags": ["communication"],
            "parameters": [_q("q", "part of the phone number, the subscriber's code or name, or the text"), *_PAGING],
            "responses": {
                **_ok(_page_of("SentSms")),
                **_problem("404", "the transport is not the simulated SMS network"),
            },
        }
    }
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    paths.update(PATHS)
    schemas.update(SCHEMAS)


def setup_routes(app: web.Application) -> None:
    app.router.add_get(PATH, sms_outbox)
