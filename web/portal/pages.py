"""Portal pages. Every read is of the signed-in subscriber's own data: no handler here takes a
subscriber id from the request."""

from __future__ import annotations

import logging

from aiohttp import web

from billing import sts as billing_sts
from web import auth
from web.errors import NotFound, TooManyAttempts
from web.i18n import N_, _, gettext
from web.keys import CLOCK, SERVICES, WEB_SETTINGS
from web.middleware import billing_of, principal_of, require_principal, sts_of, uow_of
from web.params import path_id, text
from web.permissions import public, requires
from web.queries import portal as queries
from web.queries import sts as sts_queries
from web.render import render, translate_code
from web.security import PRE_CSRF_COOKIE, THROTTLE, client_address, session_key, set_session_cookie

log = logging.getLogger("smsmeter.web.portal")

# How a subscriber reads the handshake of their credit on its way to the meter.
STATE_LABELS = {
    "0:0": N_("Sending to your meter"),
    "0:1": N_("Accepted by the mobile operator"),
    "1:0": N_("Received by your meter"),
    "1:1": N_("Credit applied by your meter"),
    "held": N_("Paid; the credit waits until a meter is installed"),
}


@public
async def login_form(request: web.Request) -> web.Response:
    principal = principal_of(request)
    if principal is not None and principal.kind == "subscriber":
        raise web.HTTPSeeOther("/portal")
    return render(request, "portal/login.html", {"code": request.query.get("code", ""), "error": "", "otp_step": False})


def _signed_in(request: web.Request, result: auth.LoginResult) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther("/portal")
    assert result.token is not None
    set_session_cookie(request, response, result.token)
    response.del_cookie(PRE_CSRF_COOKIE, path="/")
    return response


def _refused(request: web.Request, result: auth.LoginResult, code: str, otp_step: bool) -> web.Response:
    if result.outcome is auth.LoginOutcome.LOCKED:
        minutes = max(1, (result.retry_after_s + 59) // 60)
        message = _("Sign-in is locked for %(minutes)s min after too many failed attempts.", minutes=minutes)
        page = render(request, "portal/login.html", {"code": code, "error": message, "otp_step": otp_step}, status=429)
        page.headers["Retry-After"] = str(result.retry_after_s)
        return page
    message = _("Wrong code or password.") if not otp_step else _("Wrong or expired sign-in code.")
    return render(request, "portal/login.html", {"code": code, "error": message, "otp_step": otp_step}, status=401)


def _throttled(request: web.Request, code: str, *, otp_step: bool) -> web.Response | None:
    """The 429 sign-in page when this address has tried too often, else None."""
    try:
        request.app[THROTTLE].check(client_address(request))
    except TooManyAttempts as exc:
        page = render(
            request,
            "portal/login.html",
            {"code": code, "error": _("Too many attempts. Try again in a minute."), "otp_step": otp_step},
            status=429,
        )
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    return None


@public
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    code = text(form, "code", max_length=15)
    password = text(form, "password", max_length=200)
    if (refused := _throttled(request, code, otp_step=False)) is not None:
        return refused
    async with uow_of(request).begin() as conn:
        result = await auth.login_subscriber(
            conn,
            session_key(request),
            request.app[WEB_SETTINGS],
            code,
            password,
            request.app[CLOCK](),
            client_address(request),
        )
    if result.outcome is auth.LoginOutcome.OK:
        raise _signed_in(request, result)
    return _refused(request, result, code, otp_step=False)


@public
async def request_code(request: web.Request) -> web.Response:
    form = await request.post()
    code = text(form, "code", max_length=15)
    if (refused := _throttled(request, code, otp_step=False)) is not None:
        return refused
    async with uow_of(request).begin() as conn:
        otp = await auth.issue_one_time_code(
            conn, session_key(request), request.app[WEB_SETTINGS], code, request.app[CLOCK](), client_address(request)
        )
    sender = request.app[SERVICES].otp_sender
    if otp is not None:
        if sender is None:
            log.warning("no SMS sender for one-time codes is configured; code for %s not sent", code)
        else:
            await sender(otp.phone, _("Your sign-in code: %(code)s", code=otp.code))
    return render(request, "portal/login.html", {"code": code, "error": "", "otp_step": True, "sent": True})


@public
async def verify_code(request: web.Request) -> web.Response:
    form = await request.post()
    code = text(form, "code", max_length=15)
    otp = text(form, "otp", max_length=12)
    if (refused := _throttled(request, code, otp_step=True)) is not None:
        return refused
    async with uow_of(request).begin() as conn:
        result = await auth.login_subscriber_with_code(
            conn,
            session_key(request),
            request.app[WEB_SETTINGS],
            code,
            otp,
            request.app[CLOCK](),
            client_address(request),
        )
    if result.outcome is auth.LoginOutcome.OK:
        raise _signed_in(request, result)
    return _refused(request, result, code, otp_step=True)


@requires("portal.view")
async def home(request: web.Request) -> web.Response:
    principal = require_principal(request)
    assert principal.subscriber_id is not None
    async with uow_of(request).connect() as conn:
        overview = await queries.overview(conn, principal.subscriber_id, request.app[CLOCK]())
        today = request.app[CLOCK]().astimezone(billing_of(request).tz).date()
        overview["meters_charts"] = await queries.meter_charts(
            conn, principal.subscriber_id, today, heat_in_gcal=billing_of(request).heat_in_gcal
        )
        pads = await sts_queries.keypads(conn, [t["meter_id"] for t in overview["top_ups"] if t["meter_id"]])
    topup = "/topup" if any(r.canonical == "/topup" for r in request.app.router.resources()) else ""
    context = {"o": overview, "topup_url": topup, "labels": STATE_LABELS, "keypad_ids": sorted(pads)}
    return render(request, "portal/home.html", context)


@requires("portal.sts_token")
async def sts_token(request: web.Request) -> web.Response:
    """The keypad token of one of the subscriber's own stuck top-ups (billing.sts decides whether it is stuck)."""
    principal = require_principal(request)
    assert principal.subscriber_id is not None
    topup_id = path_id(request, what="top-up")
    await request.post()
    async with uow_of(request).connect() as conn:
        own = await queries.top_up(conn, principal.subscriber_id, topup_id)
    if own is None:
        raise NotFound("top-up", topup_id)
    await billing_sts.issue_credit_token(
        uow_of(request),
        principal.actor(client_address(request)),
        topup_id,
        request.app[CLOCK](),
        generator=sts_of(request),
    )
    raise web.HTTPSeeOther(f"/portal?ok=portal_sts_token#topup-{topup_id}")


@requires("portal.view")
async def consumption(request: web.Request) -> web.Response:
    principal = require_principal(request)
    assert principal.subscriber_id is not None
    period = "monthly" if request.query.get("period") == "monthly" else "daily"
    async with uow_of(request).connect() as conn:
        series = await queries.consumption(conn, principal.subscriber_id, period, request.app[CLOCK]())
    return web.json_response({"period": period, "points": series})


_FINAL = {"1:1", "rejected_smsc", "undeliverable", "expired", "rejected_meter", "timed_out", "failed", "cancelled"}


@requires("portal.view")
async def top_up_status(request: web.Request) -> web.Response:
    """The live state of one of the subscriber's own top-ups, polled by the portal."""
    principal = require_principal(request)
    assert principal.subscriber_id is not None
    topup_id = path_id(request, what="top-up")
    async with uow_of(request).connect() as conn:
        row = await queries.top_up(conn, principal.subscriber_id, topup_id)
    if row is None:
        raise NotFound("top-up", topup_id)
    state = row["command_state"] or row["state"]
    final = row["state"] in ("held", "reversed", "failed") or state in _FINAL
    return web.json_response(
        {
            "id": topup_id,
            "state": state,
            "topup_state": row["state"],
            "final": final,
            "label": translate_code(state) if state not in STATE_LABELS else gettext(STATE_LABELS[state]),
        }
    )


@requires("portal.view")
async def invoice(request: web.Request) -> web.Response:
    principal = require_principal(request)
    invoice_id = path_id(request, what="invoice")
    async with uow_of(request).connect() as conn:
        found = await queries.invoice_pdf(conn, principal.subscriber_id, invoice_id)
    if found is None:
        raise NotFound("invoice", invoice_id)
    number, pdf = found
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{number}.pdf"', "Cache-Control": "no-store"},
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/portal/login", login_form)
    app.router.add_post("/portal/login", login)
    app.router.add_post("/portal/login/code", request_code)
    app.router.add_post("/portal/login/verify", verify_code)
    app.router.add_get("/portal", home)
    app.router.add_get("/portal/consumption.json", consumption)
    app.router.add_get("/portal/topups/{id}.json", top_up_status)
    app.router.add_post("/portal/topups/{id}/sts-token", sts_token)
    app.router.add_get("/portal/invoices/{id}.pdf", invoice)
