"""The operator console: server-rendered pages for the utility's staff."""

from __future__ import annotations

from aiohttp import web

from web.console import (
    actions,
    alarm_rules,
    consumption,
    event_hooks,
    key_files,
    lists,
    login,
    money,
    operations,
    outbox,
    outcomes,
    pages,
    reading_plans,
    readings,
    reconciliation,
    registry,
    report_schedules,
    sts,
    tariffs,
    vouchers,
    wallet,
)


def setup_routes(app: web.Application) -> None:
    login.setup_routes(app)
    key_files.setup_routes(app)
    registry.setup_routes(app)  # before pages: /console/subscribers/new is not a subscriber id
    pages.setup_routes(app)
    tariffs.setup_routes(app)
    money.setup_routes(app)
    actions.setup_routes(app)
    operations.setup_routes(app)
    report_schedules.setup_routes(app)
    lists.setup_routes(app)
    readings.setup_routes(app)
    reading_plans.setup_routes(app)
    consumption.setup_routes(app)
    outbox.setup_routes(app)
    outcomes.setup_routes(app)
    sts.setup_routes(app)
    alarm_rules.setup_routes(app)
    event_hooks.setup_routes(app)
    wallet.setup_routes(app)
    vouchers.setup_routes(app)
    reconciliation.setup_routes(app)
