"""/api/v1 operations on commands and meters beyond sending one: cancel a command that has not left,
re-issue a failed credit, key change, meter settings, emergency credit, group commands. Each handler
parses the JSON, calls one use case of billing and answers what it did (the OpenAPI fragments are in
`web.api.openapi_operations`)."""

from __future__ import annotations

from aiohttp import web

from billing import commands as command_service
from billing import topup
from web.api.json import read_json, respond
from web.errors import InvalidInput, NotFound
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import path_id
from web.permissions import requires
from web.queries import lists
from web.security import client_address

PREFIX = "/api/v1"


async def _optional_body(request: web.Request) -> dict[str, object]:
    return await read_json(request) if request.body_exists else {}


def _text(body: dict[str, object], name: str, *, required: bool = True, max_length: int = 200) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidInput(name, "is required")
    if len(value) > max_length:
        raise InvalidInput(name, f"at most {max_length} characters")
    return value


async def _command(request: web.Request, command_id: int, status: int = 200) -> web.Response:
    async with uow_of(request).connect() as conn:
        row = await lists.command(conn, command_id)
    if row is None:  # pragma: no cover - the use case has just written it
        raise NotFound("command", command_id)
    response = respond(row, status=status)
    if status == 201:
        response.headers["Location"] = f"{PREFIX}/commands/{command_id}"
    return response


@requires("commands.cancel")
async def cancel_command(request: web.Request) -> web.Response:
    """Cancel a command still in 0:0 (`{"reason": ...}` required): 409 when it has left already."""
    command_id = path_id(request, what="command")
    body = await read_json(request)
    await command_service.cancel_command(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        command_id,
        request.app[CLOCK](),
        reason=_text(body, "reason"),
    )
    return await _command(request, command_id)


@requires("topups.reissue")
async def reissue_top_up(request: web.Request) -> web.Response:
    """Send a failed credit again, as a new command with the same transfer id and amount."""
    topup_id = path_id(request, what="top-up")
    command_id = await topup.reissue_top_up(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        topup_id,
        request.app[CLOCK](),
        keys=keys_of(request),
    )
    return await _command(request, command_id, status=201)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{PREFIX}/commands/{{id}}/cancel", cancel_command)
    r.add_post(f"{PREFIX}/topups/{{id}}/reissue", reissue_top_up)
