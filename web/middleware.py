"""Who is calling, in which language, and may they: the request pipeline after the error middleware.

`context_middleware` finds the principal (an API key in `Authorization: Bearer` / `X-API-Key`, else the
session cookie) and the language. `access_middleware` checks the route's action against the permission
table and, for unsafe methods from a browser, the CSRF token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from billing.service import BillingService
from billing.sts_vending import TokenGenerator
from gateway.keys import KeyRing
from store.uow import UnitOfWork
from web import auth
from web.errors import Forbidden, NotAuthenticated, ServiceUnavailable
from web.i18n import LANGUAGES, negotiate, set_language
from web.keys import CLOCK, SERVICES, WEB_SETTINGS
from web.permissions import PERMISSIONS, PUBLIC, permission_of
from web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    LANGUAGE_COOKIE,
    PRE_CSRF_COOKIE,
    check_csrf,
    is_csrf_exempt,
    session_key,
    session_token_from,
)

PRINCIPAL = web.RequestKey("principal", auth.Principal)
LANGUAGE = web.RequestKey("language", str)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def uow_of(request: web.Request) -> UnitOfWork:
    uow = request.app[SERVICES].uow
    if uow is None:
        raise ServiceUnavailable("the service is starting")
    return uow


def keys_of(request: web.Request) -> KeyRing:
    """The meter keys (sealing commands needs them); 503 until they are loaded."""
    keys = request.app[SERVICES].keys
    if keys is None:
        raise ServiceUnavailable("meter keys are not loaded")
    return keys


def sts_of(request: web.Request) -> TokenGenerator:
    """The STS token generator; 503 until the service has started it."""
    generator = request.app[SERVICES].sts
    if generator is None:
        raise ServiceUnavailable("the token generator has not started")
    return generator


def billing_of(request: web.Request) -> BillingService:
    """Billing with the utility's policies (emergency credit, meter settings); 503 until it has started."""
    billing = request.app[SERVICES].billing
    if billing is None:
        raise ServiceUnavailable("billing has not started")
    return billing


def heat_in_gcal(request: web.Request) -> bool:
    """Whether the utility shows, invoices and prices heat per Gcal (`utility.heat_unit`); kWh otherwise."""
    billing = request.app[SERVICES].billing
    return billing is not None and billing.heat_in_gcal


def principal_of(request: web.Request) -> auth.Principal | None:
    return request.get(PRINCIPAL)


def require_principal(request: web.Request) -> auth.Principal:
    principal = principal_of(request)
    if principal is None:
        raise NotAuthenticated()
    return principal


def _api_key_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key")


def _is_static(request: web.Request) -> bool:
    route = request.match_info.route
    return isinstance(getattr(route, "resource", None), web.StaticResource)


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[WEB_SETTINGS]
    principal: auth.Principal | None = None
    if not _is_static(request):
        raw_key = _api_key_of(request)
        token = session_token_from(request)
        if raw_key or token:
            uow = uow_of(request)
            now = request.app[CLOCK]()
            async with uow.begin() as conn:
                if raw_key:
                    principal = await auth.principal_for_api_key(conn, raw_key)
                    if principal is None:
                        raise NotAuthenticated("unknown or revoked API key")
                elif token:
                    principal = await auth.load_session(conn, session_key(request), settings, token, now)
    if principal is not None:
        request[PRINCIPAL] = principal
    language = (
        (principal.language if principal and principal.language in LANGUAGES else None)
        or (request.cookies.get(LANGUAGE_COOKIE) if request.cookies.get(LANGUAGE_COOKIE) in LANGUAGES else None)
        or negotiate(request.headers.get("Accept-Language", ""), settings.default_language)
    )
    request[LANGUAGE] = language
    set_language(language)
    return await handler(request)


async def _presented_csrf(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_static(request):
        return await handler(request)
    route_handler = request.match_info.handler
    action = permission_of(route_handler)
    if action is None:
        if isinstance(request.match_info, web.UrlMappingMatchInfo) and request.match_info.http_exception:
            return await handler(request)  # 404 / 405: let the error middleware answer
        raise Forbidden("call an unmarked route", "anyone")  # fail closed: every route names its action
    principal = principal_of(request)
    if action != PUBLIC:
        if principal is None:
            raise NotAuthenticated()
        if principal.role not in PERMISSIONS[action]:
            raise Forbidden(action, principal.role)
    if request.method in UNSAFE and not is_csrf_exempt(route_handler):
        if principal is not None and principal.kind == "api_key":
            pass  # no cookies, no ambient authority: an API key request cannot be forged by a browser
        elif principal is not None:
            check_csrf(principal.csrf_token, await _presented_csrf(request))
        else:
            check_csrf(request.cookies.get(PRE_CSRF_COOKIE), await _presented_csrf(request))
    return await handler(request)
