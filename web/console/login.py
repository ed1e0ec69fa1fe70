"""Operator sign-in and sign-out, the language switcher."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import update

from store import audit
from store.schema.auth import operators
from web import auth
from web.errors import RadiusError, TooManyAttempts
from web.i18n import LANGUAGES, _
from web.keys import CLOCK, SERVICES, WEB_SETTINGS
from web.middleware import principal_of, require_principal, uow_of
from web.params import safe_next, text
from web.permissions import public, requires
from web.render import render
from web.security import (
    LANGUAGE_COOKIE,
    PRE_CSRF_COOKIE,
    THROTTLE,
    clear_session_cookie,
    client_address,
    secure_cookies,
    session_key,
    set_session_cookie,
)


@public
async def root(request: web.Request) -> web.Response:
    principal = principal_of(request)
    if principal is not None and principal.kind == "subscriber":
        raise web.HTTPSeeOther("/portal")
    raise web.HTTPSeeOther("/console" if principal is not None else "/login")


@public
async def login_form(request: web.Request) -> web.Response:
    if principal_of(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next"), "/console"))
    return render(request, "login.html", {"next": request.query.get("next", ""), "username": "", "error": ""})


def signed_in(request: web.Request, result: auth.LoginResult, target: str) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(target)
    assert result.token is not None
    set_session_cookie(request, response, result.token)
    response.del_cookie(PRE_CSRF_COOKIE, path="/")
    return response


@public
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    username = text(form, "username", max_length=100)
    password = text(form, "password", max_length=200)
    target = safe_next(form.get("next") if isinstance(form.get("next"), str) else None, "/console")  # type: ignore[arg-type]
    context = {"next": form.get("next", ""), "username": username}
    address = client_address(request)
    try:
        request.app[THROTTLE].check(address)
    except TooManyAttempts as exc:
        page = render(
            request, "login.html", {**context, "error": _("Too many attempts. Try again in a minute.")}, status=429
        )
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    settings = request.app[WEB_SETTINGS]
    radius = request.app[SERVICES].radius
    try:
        async with uow_of(request).begin() as conn:
            result = await auth.login_operator(
                conn, session_key(request), settings, radius, username, password, request.app[CLOCK](), address
            )
    except RadiusError:
        return render(
            request,
            "login.html",
            {**context, "error": _("The authentication server does not answer. Try again later.")},
            status=503,
        )
    if result.outcome is auth.LoginOutcome.OK:
        raise signed_in(request, result, target)
    if result.outcome is auth.LoginOutcome.LOCKED:
        minutes = max(1, (result.retry_after_s + 59) // 60)
        page = render(
            request,
            "login.html",
            {
                **context,
                "error": _(
                    "This account is locked for %(minutes)s min after too many failed attempts.", minutes=minutes
                ),
            },
            status=429,
        )
        page.headers["Retry-After"] = str(result.retry_after_s)
        return page
    return render(request, "login.html", {**context, "error": _("Wrong user name or password.")}, status=401)


@requires("session.logout")
async def logout(request: web.Request) -> web.Response:
    principal = require_principal(request)
    target = "/portal/login?ok=signed_out" if principal.kind == "subscriber" else "/login?ok=signed_out"
    if principal.session_id:
        async with uow_of(request).begin() as conn:
            await auth.close_session(conn, principal.session_id)
            action = "portal.logout" if principal.kind == "subscriber" else "logout"
            await audit.record(conn, principal.actor(client_address(request)), action, request.app[CLOCK]())
    response = web.HTTPSeeOther(target)
    clear_session_cookie(request, response)
    raise response


@public
async def change_language(request: web.Request) -> web.Response:
    form = await request.post()
    language = form.get("language")
    target = safe_next(form.get("next") if isinstance(form.get("next"), str) else None, "/")  # type: ignore[arg-type]
    response = web.HTTPSeeOther(target)
    if isinstance(language, str) and language in LANGUAGES:
        principal = principal_of(request)
        if principal is not None and principal.session_id:
            async with uow_of(request).begin() as conn:
                await auth.set_session_language(conn, principal.session_id, language)
                if principal.kind == "operator":
                    await conn.execute(
                        update(operators).where(operators.c.id == principal.id).values(language=language)
                    )
        response.set_cookie(
            LANGUAGE_COOKIE, language, path="/", max_age=365 * 86400, samesite="Lax", secure=secure_cookies(request)
        )
    raise response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", root)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/language", change_language)
