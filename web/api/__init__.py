"""The REST API under /api/v1 (JSON, problem+json errors, OpenAPI 3.1 at /api/v1/openapi.json)."""

from __future__ import annotations

from aiohttp import web


def setup_routes(app: web.Application) -> None:
    from web.api import (
        alarm_rules,
        event_hooks,
        key_files,
        money,
        operations,
        outbox,
        reading_plans,
        readings,
        reconciliation,
        registry,
        report_schedules,
        sts,
        tariffs,
        v1,
        vouchers,
        wallet,
    )

    key_files.setup_routes(app)  # before v1: /api/v1/meters/stock is not a meter id
    v1.setup_routes(app)
    operations.setup_routes(app)
    registry.setup_routes(app)
    tariffs.setup_routes(app)
    money.setup_routes(app)
    readings.setup_routes(app)
    reading_plans.setup_routes(app)
    outbox.setup_routes(app)
    sts.setup_routes(app)
    alarm_rules.setup_routes(app)
    event_hooks.setup_routes(app)
    report_schedules.setup_routes(app)
    wallet.setup_routes(app)
    vouchers.setup_routes(app)
    reconciliation.setup_routes(app)
