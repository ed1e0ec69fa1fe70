"""/api/v1 operations on commands and meters beyond sending one: cancel a command that has not left,
re-issue a failed credit, key change, meter settings, emergency credit, group commands. Each handler
parses the JSON, calls one use case of billing and answers what it did (the OpenAPI fragments are in
`web.api.openapi_operations`)."""

from __future__ import annotations

from aiohttp import web

from billing import arrears, meter_keys, topup
from billing import commands as command_service
from billing.bulk import Job
from billing.control import Action, Control, control_group, control_meter
from web.api.json import read_json, respond
from web.commands import group_from_fields, optional_minor, optional_minute_of_day
from web.errors import InvalidInput, NotFound
from web.keys import CLOCK
from web.middleware import billing_of, keys_of, require_principal, uow_of
from web.params import bounded_int, path_id
from web.permissions import requires
from web.queries import jobs, lists
from web.queries.keys import key_states, meter_keys_of
from web.security import client_address

PREFIX = "/api/v1"


async def _optional_body(request: web.Request) -> dict[str, object]:
    return await read_json(request) if request.body_exists else {}


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 150:
        raise InvalidInput("Idempotency-Key", "must be 1-150 characters")
    principal = require_principal(request)
    return f"api:{principal.kind}:{principal.id}:{key}"


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


async def _keys_view(request: web.Request, meter_id: int) -> dict[str, object]:
    async with uow_of(request).connect() as conn:
        states = await key_states(conn, [meter_id])
        if meter_id not in states:
            raise NotFound("meter", meter_id)
        return {"meter_id": meter_id, **states[meter_id], "keys": await meter_keys_of(conn, meter_id)}


@requires("meters.read")
async def meter_keys_state(request: web.Request) -> web.Response:
    """The key in force, a change under way with its command's state, every key the meter has had."""
    return respond(await _keys_view(request, path_id(request, what="meter")))


@requires("meters.keys")
async def change_key(request: web.Request) -> web.Response:
    """Start a key change over the air; the new key takes over when the meter acknowledges it (1:1)."""
    meter_id = path_id(request, what="meter")
    started = await meter_keys.change_meter_key(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        request.app[CLOCK](),
        keys=keys_of(request),
        idempotency_key=_idempotency_key(request),
    )
    response = respond({**(await _keys_view(request, meter_id)), "command_id": started.command_id}, status=202)
    response.headers["Location"] = f"{PREFIX}/commands/{started.command_id}"
    return response


def _settings_control(request: web.Request, body: dict[str, object]) -> Control:
    settings = billing_of(request).meter_settings(
        request.app[CLOCK](),
        low_credit_minor=optional_minor(body, "low_credit_minor", 0),
        emergency_credit_minor=optional_minor(body, "emergency_credit_minor", 0),
        friendly_start_min=optional_minute_of_day(body, "friendly_start"),
        friendly_end_min=optional_minute_of_day(body, "friendly_end"),
    )
    return Control(Action.CONFIGURE, settings=settings, note=_text(body, "note", required=False))


@requires("meters.configure")
async def configure_meter(request: web.Request) -> web.Response:
    """Send the meter its settings: the utility's policy, with the fields given here instead."""
    meter_id = path_id(request, what="meter")
    body = await _optional_body(request)
    command_id = await control_meter(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        _settings_control(request, body),
        request.app[CLOCK](),
        keys=keys_of(request),
        idempotency_key=_idempotency_key(request),
    )
    return await _command(request, command_id, status=201)


@requires("credit.emergency")
async def emergency_credit(request: web.Request) -> web.Response:
    """Emergency credit on loan (once per arrears episode), as the utility's policy sets it."""
    subscriber_id = path_id(request, what="subscriber")
    command_id = await arrears.grant_emergency_credit(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        subscriber_id,
        billing_of(request).arrears_policy,
        request.app[CLOCK](),
        keys=keys_of(request),
    )
    return await _command(request, command_id, status=201)


GROUP_ACTIONS = {a.value for a in Action}


async def _job(request: web.Request, job: Job) -> web.Response:
    async with uow_of(request).connect() as conn:
        found = await jobs.job(conn, job.id)
    response = respond(found, status=201)
    response.headers["Location"] = f"{PREFIX}/jobs/{job.id}"
    return response


@requires("commands.group")
async def group_command(request: web.Request) -> web.Response:
    """One command to every active meter of a transformer, a street or a building, as a bulk job."""
    body = await read_json(request)
    action = body.get("action")
    if action not in GROUP_ACTIONS:
        raise InvalidInput("action", f"must be one of {', '.join(sorted(GROUP_ACTIONS))}")
    if action == Action.CONFIGURE.value:
        control = _settings_control(request, body)
    else:
        limit = body.get("limit_w", 0)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise InvalidInput("limit_w", "must be a whole number of watts")
        control = Control(Action(str(action)), note=_text(body, "reason", required=False), limit_w=limit)
    job = await control_group(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        group_from_fields(body),
        control,
        request.app[CLOCK](),
        keys=keys_of(request),
    )
    return await _job(request, job)


@requires("meters.keys")
async def group_key_change(request: web.Request) -> web.Response:
    """A key change for every active meter of a group, throttled to `per_minute`, as a bulk job."""
    body = await read_json(request)
    job = await meter_keys.change_group_keys(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        group_from_fields(body),
        request.app[CLOCK](),
        keys=keys_of(request),
        per_minute=bounded_int(body, "per_minute", 60, 1, 100_000),
    )
    return await _job(request, job)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{PREFIX}/commands/{{id}}/cancel", cancel_command)
    r.add_post(f"{PREFIX}/topups/{{id}}/reissue", reissue_top_up)
    r.add_get(f"{PREFIX}/meters/{{id}}/keys", meter_keys_state)
    r.add_post(f"{PREFIX}/meters/{{id}}/key-change", change_key)
    r.add_post(f"{PREFIX}/meters/{{id}}/configure", configure_meter)
    r.add_post(f"{PREFIX}/subscribers/{{id}}/emergency-credit", emergency_credit)
    r.add_post(f"{PREFIX}/group-commands", group_command)
    r.add_post(f"{PREFIX}/key-changes", group_key_change)
