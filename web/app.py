"""The web application factory: routes and middlewares. Services come in through typed app keys set by
the composition root; the shell holds no business rules."""

from __future__ import annotations

from aiohttp import web

from web import health


def create_app(*, health_check: health.HealthCheck) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[health.HEALTH_CHECK] = health_check
    health.setup_routes(app)
    return app
