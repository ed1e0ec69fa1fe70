"""Console actions on commands and meters beyond relay and read: cancel a command that has not left, re-issue
a failed credit, the engineering commands (power limit, time sync, ping, clear tamper), meter settings,
emergency credit, key change (one meter or a group), and group commands. Each handler parses the form,
calls one use case of billing, and redirects to where the outcome shows."""

from __future__ import annotations

from aiohttp import web

from billing import commands as command_service
from billing import topup
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import path_id, text
from web.permissions import requires
from web.security import client_address


@requires("commands.cancel")
async def cancel(request: web.Request) -> web.Response:
    command_id = path_id(request, what="command")
    form = await request.post()
    await command_service.cancel_command(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        command_id,
        request.app[CLOCK](),
        reason=text(form, "reason", max_length=200),
    )
    raise web.HTTPSeeOther(f"/console/commands/{command_id}?ok=cancelled")


@requires("topups.reissue")
async def reissue(request: web.Request) -> web.Response:
    topup_id = path_id(request, what="top-up")
    await request.post()
    command_id = await topup.reissue_top_up(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        topup_id,
        request.app[CLOCK](),
        keys=keys_of(request),
    )
    raise web.HTTPSeeOther(f"/console/commands/{command_id}?ok=reissued")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/console/commands/{id}/cancel", cancel)
    r.add_post("/console/topups/{id}/reissue", reissue)
