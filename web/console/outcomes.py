"""The live outcome of a command the operator just sent: the small JSON the page polls until the command is
final (`web.outcomes.describe`: the state, in words, the meter's reason when it refused, and what to do)."""

from __future__ import annotations

from aiohttp import web

from web.errors import NotFound
from web.middleware import uow_of
from web.outcomes import describe
from web.params import path_id
from web.permissions import requires
from web.queries.outcomes import command_outcome


@requires("commands.read")
async def outcome(request: web.Request) -> web.Response:
    command_id = path_id(request, what="command")
    async with uow_of(request).connect() as conn:
        found = await command_outcome(conn, command_id)
    if found is None:
        raise NotFound("command", command_id)
    return web.json_response(describe(found), headers={"Cache-Control": "no-store"})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/console/commands/{id}/outcome.json", outcome)
