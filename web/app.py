"""The web application factory: routes and middlewares. Services come in through typed app keys set by
the composition root; the shell holds no business rules."""

from __future__ import annotations

from aiohttp import web

from web import checkout, health, webhooks


def create_app(
    *, health_check: health.HealthCheck, payment_services: webhooks.PaymentServices | None = None
) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[health.HEALTH_CHECK] = health_check
    app[webhooks.PAYMENT_SERVICES] = payment_services or webhooks.PaymentServices()
    health.setup_routes(app)
    webhooks.setup_routes(app)
    checkout.setup_routes(app)
    return app
