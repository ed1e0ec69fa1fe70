"""The subscriber portal: sign-in, balance, consumption, payments, invoices, online top-up."""

from __future__ import annotations

from aiohttp import web


def setup_routes(app: web.Application) -> None:
    from web.portal import pages

    pages.setup_routes(app)
