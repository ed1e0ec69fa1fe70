"""Portal pages. Every read is of the signed-in subscriber's own data: no handler here takes a
subscriber id from the request."""

from __future__ import annotations

import logging

from aiohttp import web

from web import auth
from web.errors import TooManyAttempts
from web.i18n import _
from web.keys import CLOCK, SERVICES, WEB_SETTINGS
from web.middleware import principal_of, require_principal, uow_of
from web.params import text
from web.permissions import public, requires
from web.queries import portal as queries
from web.render import render
from web.security import PRE_CSRF_COOKIE, THROTTLE, client_address, session_key, set_session_cookie

log = logging.getLogger("smsmeter.web.portal")


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


def _throttle(request: web.Request) -> None:
    request.app[THROTTLE].check(client_address(request))


@public
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    code = text(form, "code", max_length=15)
    password = text(form, "password", max_length=200)
    try:
        _throttle(request)
    except TooManyAttempts:
        return render(
            request,
            "portal/login.html",
            {"code": code, "error": _("Too many attempts. Try again in a minute."), "otp_step": False},
            status=429,
        )
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
    try:
        _throttle(request)
    except TooManyAttempts:
        return render(
            request,
            "portal/login.html",
            {"code": code, "error": _("Too many attempts. Try again in a minute."), "otp_step": False},
            status=429,
        )
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
    try:
        _throttle(request)
    except TooManyAttempts:
        return render(
            request,
            "portal/login.html",
            {"code": code, "error": _("Too many attempts. Try again in a minute."), "otp_step": True},
            status=429,
        )
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
    return render(request, "portal/home.html", {"o": overview})


@requires("portal.view")
async def consumption(request: web.Request) -> web.Response:
    principal = require_principal(request)
    assert principal.subscriber_id is not None
    period = "monthly" if request.query.get("period") == "monthly" else "daily"
    async with uow_of(request).connect() as conn:
        series = await queries.consumption(conn, principal.subscriber_id, period, request.app[CLOCK]())
    return web.json_response({"period": period, "points": series})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/portal/login", login_form)
    app.router.add_post("/portal/login", login)
    app.router.add_post("/portal/login/code", request_code)
    app.router.add_post("/portal/login/verify", verify_code)
    app.router.add_get("/portal", home)
    app.router.add_get("/portal/consumption.json", consumption)
