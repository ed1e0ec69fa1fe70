"""Console actions on commands and meters beyond relay and read: cancel a command that has not left, re-issue
a failed credit, the engineering commands (power limit, time sync, ping, clear tamper), the meter's settings,
emergency credit, key change (one meter or a group), group commands, and the progress of a group's job.
Each handler parses the form, calls one use case of billing, and redirects to where the outcome shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from billing import arrears, meter_keys, topup
from billing import commands as command_service
from billing.control import Action, Control, control_group, control_meter, send_command
from billing.places import list_transformers
from web.commands import command_from_fields, group_from_fields, optional_minor, optional_minute_of_day
from web.console.actions import _request_id as request_id_of
from web.keys import CLOCK
from web.middleware import billing_of, keys_of, require_principal, uow_of
from web.params import bounded_int, choice, path_id, text
from web.permissions import requires
from web.queries import jobs
from web.render import render
from web.security import client_address

ENGINEERING = ("set_power_limit", "time_sync", "ping", "clear_tamper")
GROUP_ACTIONS = ("relay_off", "relay_on", "read", "time_sync", "power_limit", "configure")


def _card_of_meter(meter_id: int, ok: str, command_id: int) -> web.HTTPSeeOther:
    """To the meter's card, where the command's outcome shows live."""
    return web.HTTPSeeOther(f"/console/meters/{meter_id}?ok={ok}&command={command_id}")


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
    raise web.HTTPSeeOther(f"/console/commands/{command_id}?ok=cancelled&command={command_id}")


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
    raise web.HTTPSeeOther(f"/console/commands/{command_id}?ok=reissued&command={command_id}")


@requires("commands.issue")
async def engineering(request: web.Request) -> web.Response:
    """Power limit, time sync, ping, clear tamper: billing's `send_command`, audited `command.<kind>`."""
    meter_id = path_id(request, what="meter")
    form = await request.post()
    kind = choice(form, "kind", ENGINEERING)
    now = request.app[CLOCK]()
    fields: dict[str, object] = {"kind": kind}
    if kind == "set_power_limit":
        fields["limit_w"] = bounded_int(form, "limit_w", -1, 0, 10**9)
    command_id = await send_command(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        command_from_fields(fields, now),
        now,
        keys=keys_of(request),
        idempotency_key=f"web:{request_id_of(form)}",
    )
    raise _card_of_meter(meter_id, kind, command_id)


@requires("meters.configure")
async def configure(request: web.Request) -> web.Response:
    """The meter's settings: the utility's policy, with what the operator changed in the form."""
    meter_id = path_id(request, what="meter")
    form = await request.post()
    now = request.app[CLOCK]()
    settings = billing_of(request).meter_settings(
        now,
        low_credit_minor=optional_minor(form, "low_credit"),
        emergency_credit_minor=optional_minor(form, "emergency_credit"),
        friendly_start_min=optional_minute_of_day(form, "friendly_start"),
        friendly_end_min=optional_minute_of_day(form, "friendly_end"),
    )
    command_id = await control_meter(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        Control(Action.CONFIGURE, settings=settings, note=text(form, "note", required=False, max_length=200)),
        now,
        keys=keys_of(request),
        idempotency_key=f"web:{request_id_of(form)}",
    )
    raise _card_of_meter(meter_id, "configure", command_id)


@requires("meters.keys")
async def key_change(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    started = await meter_keys.change_meter_key(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        meter_id,
        request.app[CLOCK](),
        keys=keys_of(request),
        idempotency_key=f"web:{request_id_of(form)}",
    )
    raise _card_of_meter(meter_id, "key_change", started.command_id)


@requires("credit.emergency")
async def emergency_credit(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    await request.post()
    command_id = await arrears.grant_emergency_credit(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        subscriber_id,
        billing_of(request).arrears_policy,
        request.app[CLOCK](),
        keys=keys_of(request),
    )
    raise web.HTTPSeeOther(f"/console/subscribers/{subscriber_id}?ok=emergency&command={command_id}")


@requires("commands.group")
async def groups(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        transformers = await list_transformers(conn)
        recent = await jobs.recent_jobs(conn)
    return render(request, "console/groups.html", {"transformers": transformers, "jobs": recent})


def _group_control(form: Mapping[str, Any]) -> Control:
    action = Action(choice(form, "action", GROUP_ACTIONS))
    note = text(form, "reason", required=False, max_length=200)
    if action is Action.POWER_LIMIT:
        return Control(action, limit_w=bounded_int(form, "limit_w", -1, 0, 10**9), note=note)
    return Control(action, note=note)


@requires("commands.group")
async def group_command(request: web.Request) -> web.Response:
    form = await request.post()
    control = _group_control(form)
    now = request.app[CLOCK]()
    if control.action is Action.CONFIGURE:
        control = Control(Action.CONFIGURE, settings=billing_of(request).meter_settings(now), note=control.note)
    job = await control_group(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        group_from_fields(form),
        control,
        now,
        keys=keys_of(request),
    )
    raise web.HTTPSeeOther(f"/console/jobs/{job.id}?ok=group")


@requires("meters.keys")
async def group_key_change(request: web.Request) -> web.Response:
    form = await request.post()
    job = await meter_keys.change_group_keys(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        group_from_fields(form),
        request.app[CLOCK](),
        keys=keys_of(request),
        per_minute=bounded_int(form, "per_minute", 60, 1, 100_000),
    )
    raise web.HTTPSeeOther(f"/console/jobs/{job.id}?ok=group")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/console/commands/{id}/cancel", cancel)
    r.add_post("/console/topups/{id}/reissue", reissue)
    r.add_post("/console/meters/{id}/command", engineering)
    r.add_post("/console/meters/{id}/configure", configure)
    r.add_post("/console/meters/{id}/key-change", key_change)
    r.add_post("/console/subscribers/{id}/emergency-credit", emergency_credit)
    r.add_get("/console/groups", groups)
    r.add_post("/console/groups/command", group_command)
    r.add_post("/console/groups/key-change", group_key_change)
