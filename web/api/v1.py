"""/api/v1: the integrators' API. Handlers parse, call one query or use case, answer JSON; errors are
problem+json (RFC 9457) from the error middleware. Lists take `limit` (1-200) and `offset`, and answer
`{"items": [...], "total", "limit", "offset"}`; times are ISO 8601 UTC."""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

import meter_protocol as mp
from billing import alarms as alarms_service
from billing import control, topup
from billing import registry as registry_service
from billing.values import PaymentConfirmed
from web.api.json import parse_time, read_json, respond
from web.api.openapi import document
from web.commands import command_from_fields
from web.errors import InvalidInput, NotFound, UnsupportedMediaType
from web.keys import CLOCK, CURRENCY
from web.listing import list_page
from web.middleware import keys_of, require_principal, uow_of
from web.params import bounded_int, paging, path_id
from web.permissions import PERMISSIONS, public, requires
from web.queries import lists, registry, reports
from web.security import client_address

PREFIX = "/api/v1"


@public
async def openapi(request: web.Request) -> web.Response:
    return respond(document())


@requires("session.logout")
async def me(request: web.Request) -> web.Response:
    p = require_principal(request)
    actions = sorted(a for a, roles in PERMISSIONS.items() if p.role in roles)
    return respond({"kind": p.kind, "name": p.name, "role": p.role, "actions": actions})


@requires("subscribers.read")
async def subscribers(request: web.Request) -> web.Response:
    limit, offset = paging(request.query)
    async with uow_of(request).connect() as conn:
        page = await registry.search_subscribers(
            conn,
            request.query.get("q", "")[:100],
            status=request.query.get("status") or None,
            limit=limit,
            offset=offset,
        )
    return respond(page.as_json())


@requires("subscribers.read")
async def subscriber(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    async with uow_of(request).connect() as conn:
        summary = await registry.subscriber_summary(conn, subscriber_id)
    if summary is None:
        raise NotFound("subscriber", subscriber_id)
    return respond(summary)


def _subscriber_fields(body: dict[str, object]) -> dict[str, object]:
    fields = {k: v for k, v in body.items() if k != "code"}
    for name in ("registered_on", "ended_on"):
        raw = fields.get(name)
        if isinstance(raw, str):
            try:
                fields[name] = date.fromisoformat(raw)
            except ValueError:
                raise InvalidInput(name, "must be a date, YYYY-MM-DD") from None
    return fields


@requires("subscribers.write")
async def create_subscriber(request: web.Request) -> web.Response:
    body = await read_json(request)
    code = body.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and len(str(code)) == 15:
        code = str(code)  # a JSON number of 15 digits (no leading zero) is the same code
    if not isinstance(code, str):
        raise InvalidInput("code", "must be the 15-digit subscriber code, a string")
    principal = require_principal(request)
    async with uow_of(request).begin() as conn:
        created = await registry_service.create_subscriber(
            conn,
            principal.actor(client_address(request)),
            code,
            _subscriber_fields(body),
            currency=request.app[CURRENCY],
            now=request.app[CLOCK](),
        )
        summary = await registry.subscriber_summary(conn, created.id)
    response = respond(summary, status=201)
    response.headers["Location"] = f"{PREFIX}/subscribers/{created.id}"
    return response


@requires("subscribers.write")
async def update_subscriber(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    body = await read_json(request)
    if "code" in body:
        raise InvalidInput("code", "a subscriber's code does not change")
    principal = require_principal(request)
    async with uow_of(request).begin() as conn:
        await registry_service.update_subscriber(
            conn,
            principal.actor(client_address(request)),
            subscriber_id,
            _subscriber_fields(body),
            request.app[CLOCK](),
        )
        summary = await registry.subscriber_summary(conn, subscriber_id)
    return respond(summary)


@requires("ledger.read")
async def subscriber_ledger(request: web.Request) -> web.Response:
    subscriber_id = path_id(request, what="subscriber")
    limit, offset = paging(request.query)
    async with uow_of(request).connect() as conn:
        page = await lists.ledger_page(conn, subscriber_id, limit=limit, offset=offset)
    if page is None:
        raise NotFound("subscriber account", subscriber_id)
    return respond(page.as_json())


@requires("meters.read")
async def meters(request: web.Request) -> web.Response:
    limit, offset = paging(request.query)
    async with uow_of(request).connect() as conn:
        page = await registry.meters_page(
            conn,
            q=request.query.get("q", "")[:20],
            status=request.query.get("status") or None,
            limit=limit,
            offset=offset,
        )
    return respond(page.as_json())


@requires("meters.read")
async def meter(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    async with uow_of(request).connect() as conn:
        row = await registry.meter(conn, meter_id)
    if row is None:
        raise NotFound("meter", meter_id)
    return respond(row)


@requires("tariffs.read")
async def tariffs(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        items = await lists.tariffs_list(conn)
    return respond({"items": items, "total": len(items), "limit": len(items), "offset": 0})


@requires("commands.read")
async def commands(request: web.Request) -> web.Response:
    return respond((await list_page(request, "commands")).as_json())


@requires("commands.read")
async def command(request: web.Request) -> web.Response:
    command_id = path_id(request, what="command")
    async with uow_of(request).connect() as conn:
        row = await lists.command(conn, command_id)
    if row is None:
        raise NotFound("command", command_id)
    return respond(row)


XML_TYPES = ("application/xml", "text/xml")


@requires("commands.issue")
async def issue(request: web.Request) -> web.Response:
    """A command to one meter, as JSON ({"meter_id", "kind", ...}) or as the protocol's XML document
    (`?meter_id=`; validated against the protocol's XSD). `Idempotency-Key` makes a retry safe."""
    now = request.app[CLOCK]()
    note: str | None = None
    if request.content_type in XML_TYPES:
        meter_id = bounded_int(request.query, "meter_id", 0, 1, 10**18)
        if not meter_id:
            raise InvalidInput("meter_id", "is required (a query parameter) with an XML document")
        document = mp.message_from_xml(await request.read())
        if not isinstance(document, mp.Command):
            raise InvalidInput("body", f"a {document.message_type.name.lower()} is a meter's report, not a command")
        message = document
    elif request.content_type == "application/json":
        body = await read_json(request)
        given = body.get("meter_id")
        if not isinstance(given, int) or isinstance(given, bool) or given < 1:
            raise InvalidInput("meter_id", "must be a meter id")
        meter_id = given
        message = command_from_fields(body, now)
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 200):
            raise InvalidInput("note", "must be a string of at most 200 characters")
    else:
        raise UnsupportedMediaType(request.content_type)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 150:
        raise InvalidInput("Idempotency-Key", "must be 1-150 characters")
    principal = require_principal(request)
    keys = keys_of(request)
    command_id = await control.send_command(
        uow_of(request),
        principal.actor(client_address(request)),
        meter_id,
        message,
        now,
        keys=keys,
        idempotency_key=f"api:{principal.kind}:{principal.id}:{key}" if key else None,
        note=(note.strip() or None) if note else None,
    )
    async with uow_of(request).connect() as conn:
        row = await lists.command(conn, command_id)
    response = respond(row, status=201)
    response.headers["Location"] = f"{PREFIX}/commands/{command_id}"
    return response


@requires("payments.read")
async def payments(request: web.Request) -> web.Response:
    return respond((await list_page(request, "payments")).as_json())


@requires("payments.cash")
async def record_payment(request: web.Request) -> web.Response:
    """A payment taken elsewhere (a bank, a post office) that an integration reports: applied through
    billing like any payment — ledger, debt recovery, credit to the meter — once per `provider_ref`."""
    body = await read_json(request)
    principal = require_principal(request)
    ref = body.get("provider_ref")
    amount = body.get("amount_minor")
    if not isinstance(ref, str) or not 1 <= len(ref) <= 150:
        raise InvalidInput("provider_ref", "your transaction id, 1-150 characters")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidInput("amount_minor", "a positive whole number of minor units")
    code = body.get("subscriber_code")
    if not isinstance(code, str):
        raise InvalidInput("subscriber_code", "is required")
    meter_code = body.get("meter_code")
    if meter_code is not None and not isinstance(meter_code, str):
        raise InvalidInput("meter_code", "must be a string")
    paid_at = parse_time(body, "paid_at") or request.app[CLOCK]()
    keys = keys_of(request)
    result = await topup.apply_payment(
        uow_of(request),
        PaymentConfirmed(
            provider=f"{principal.kind}:{principal.name}"[:30],
            provider_ref=ref,
            amount_minor=amount,
            currency=str(body.get("currency") or request.app[CURRENCY]),
            paid_at=paid_at,
            subscriber_code=code,
            meter_code=meter_code,
        ),
        request.app[CLOCK](),
        keys=keys,
        actor=principal.actor(client_address(request)),
    )
    return respond(
        {
            "topup_id": result.topup_id,
            "payment_id": result.payment_id,
            "command_id": result.command_id,
            "state": result.state,
            "amount_minor": result.amount.minor,
            "recovered_minor": result.recovered.minor,
            "vended_minor": result.vended.minor,
            "duplicate": result.duplicate,
        },
        status=200 if result.duplicate else 201,
    )


@requires("notices.read")
async def notices(request: web.Request) -> web.Response:
    return respond((await list_page(request, "notices")).as_json())


@requires("communication.read")
async def wrong_sms(request: web.Request) -> web.Response:
    return respond((await list_page(request, "wrong_sms")).as_json())


@requires("alarms.read")
async def alarms(request: web.Request) -> web.Response:
    return respond((await list_page(request, "alarms")).as_json())


@requires("alarms.ack")
async def acknowledge_alarm(request: web.Request) -> web.Response:
    """Acknowledge an alarm; an optional JSON body `{"note": "..."}` goes into the audit row. Acknowledging
    it again changes nothing and answers who was first."""
    alarm_id = path_id(request, what="alarm")
    note = ""
    if request.body_exists:
        value = (await read_json(request)).get("note", "")
        if not isinstance(value, str):
            raise InvalidInput("note", "must be a string")
        note = value
    done = await alarms_service.acknowledge_alarm(
        uow_of(request),
        require_principal(request).actor(client_address(request)),
        alarm_id,
        request.app[CLOCK](),
        note=note,
    )
    async with uow_of(request).connect() as conn:
        item = await lists.alarm(conn, alarm_id)
    return respond({**(item or {}), "already_acknowledged": done.already})


@requires("audit.read")
async def audit_entries(request: web.Request) -> web.Response:
    return respond((await list_page(request, "audit")).as_json())


@requires("reports.read")
async def report(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in reports.BUILDERS:
        raise NotFound("report", name)
    days = bounded_int(request.query, "days", 30, 1, 366)
    until = request.app[CLOCK]().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    since = until - timedelta(days=days)
    async with uow_of(request).connect() as conn:
        result = await reports.BUILDERS[name](conn, since, until)
    return respond(
        {
            "name": name,
            "since": since,
            "until": until,
            "columns": [{"key": c.key, "title": c.title, "kind": c.kind} for c in result.columns],
            "rows": result.rows,
            "series": result.series,
        }
    )


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/openapi.json", openapi)
    r.add_get(f"{PREFIX}/me", me)
    r.add_get(f"{PREFIX}/subscribers", subscribers)
    r.add_post(f"{PREFIX}/subscribers", create_subscriber)
    r.add_get(f"{PREFIX}/subscribers/{{id}}", subscriber)
    r.add_patch(f"{PREFIX}/subscribers/{{id}}", update_subscriber)
    r.add_get(f"{PREFIX}/subscribers/{{id}}/ledger", subscriber_ledger)
    r.add_get(f"{PREFIX}/meters", meters)
    r.add_get(f"{PREFIX}/meters/{{id}}", meter)
    r.add_get(f"{PREFIX}/tariffs", tariffs)
    r.add_get(f"{PREFIX}/commands", commands)
    r.add_get(f"{PREFIX}/commands/{{id}}", command)
    r.add_post(f"{PREFIX}/commands", issue)
    r.add_get(f"{PREFIX}/payments", payments)
    r.add_post(f"{PREFIX}/payments", record_payment)
    r.add_get(f"{PREFIX}/notices", notices)
    r.add_get(f"{PREFIX}/wrong-sms", wrong_sms)
    r.add_get(f"{PREFIX}/alarms", alarms)
    r.add_post(f"{PREFIX}/alarms/{{id}}/acknowledge", acknowledge_alarm)
    r.add_get(f"{PREFIX}/audit", audit_entries)
    r.add_get(f"{PREFIX}/reports/{{name}}", report)
