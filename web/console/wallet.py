"""Console action on the subscriber card: send the credit the wallet holds (paid while no meter was installed,
or carried over from a replaced meter) to the active meter. Parses the form, calls the use case, redirects."""

from __future__ import annotations

from aiohttp import web

from web.api.wallet import vend
from web.console.actions import _request_id as request_id_of
from web.params import path_id
from web.permissions import requires


@requires("topups.reissue")
async def vend_held_credit(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    result = await vend(request, subscriber_id, request_id_of(await request.post()))
    raise web.HTTPSeeOther(f"/console/commands/{result.command_id}?ok=held_credit_sent&command={result.command_id}")


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/console/subscribers/{id}/vend-held-credit", vend_held_credit)
