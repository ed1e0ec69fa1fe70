"""The web application factory: routes and middlewares. Services come in through typed app keys set by
the composition root; the shell holds no business rules."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from config import RadiusSettings, WebSettings
from web import health, webhooks
from web.jobs import setup_jobs
from web.keys import (
    CLOCK,
    CURRENCY,
    RADIUS_SETTINGS,
    SERVICES,
    SESSION_KEY,
    UTILITY_NAME,
    WEB_SETTINGS,
    Clock,
    Services,
)
from web.middleware import access_middleware, context_middleware
from web.permissions import public
from web.problems import error_middleware
from web.render import setup_templates
from web.security import THROTTLE, make_throttle

STATIC = Path(__file__).with_name("static")

_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response


@public
async def _favicon(request: web.Request) -> web.FileResponse:
    """Browsers ask for /favicon.ico whatever the page says; the same icon the pages link."""
    return web.FileResponse(STATIC / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    *,
    health_check: health.HealthCheck,
    services: Services | None = None,
    web_settings: WebSettings | None = None,
    radius_settings: RadiusSettings | None = None,
    clock: Clock = _utc_now,
    utility_name: str = "smsmeter",
    currency: str = "USD",
    payment_services: webhooks.PaymentServices | None = None,
) -> web.Application:
    """The application. `services` may be filled in later (at start-up) by the composition root."""
    from web import (
        api,
        checkout,
        checkout_simulator,
        console,
        portal,
    )  # the route modules import the renderer, which needs the app keys

    settings = web_settings or WebSettings()
    app = web.Application(
        client_max_size=1024 * 1024,
        middlewares=[_security_headers, error_middleware, context_middleware, access_middleware],
    )
    app[health.HEALTH_CHECK] = health_check
    app[SERVICES] = services or Services()
    app[WEB_SETTINGS] = settings
    app[RADIUS_SETTINGS] = radius_settings or RadiusSettings()
    app[CLOCK] = clock
    app[UTILITY_NAME] = utility_name
    app[CURRENCY] = currency
    secret = settings.session_secret.reveal().encode() if settings.session_secret else secrets.token_bytes(32)
    app[SESSION_KEY] = secret
    app[THROTTLE] = make_throttle(settings)
    app[webhooks.PAYMENT_SERVICES] = payment_services or webhooks.PaymentServices()
    setup_jobs(app)
    setup_templates(app)
    health.setup_routes(app)
    console.setup_routes(app)
    portal.setup_routes(app)
    api.setup_routes(app)
    webhooks.setup_routes(app)
    checkout.setup_routes(app)
    checkout_simulator.setup_routes(app)
    app.router.add_static("/static/", STATIC, name="static", append_version=True)
    app.router.add_get("/favicon.ico", _favicon)
    return app
