"""Building the running service from the settings: the one place that wires every part together.

`build_app` returns the aiohttp application; its cleanup context owns every long-lived resource (the
database engine, the transport, the background workers) and releases them in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.topup import on_command_settled
from config import Settings
from gateway.events import CommandSettled, GatewayEvent
from gateway.keys import KeyRing
from gateway.ports import Transport
from smsmeter import __version__
from smsmeter.masterkey import load_master_key
from smsmeter.wiring import GatewayRuntime, running_gateway
from store import migrate
from store.engine import create_engine
from store.uow import UnitOfWork
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.keys import Services
from web.radius import RadiusPasswordChecker

log = logging.getLogger("smsmeter")

ENGINE = web.AppKey("engine", AsyncEngine)
UOW = web.AppKey("uow", UnitOfWork)
KEYS = web.AppKey("keys", KeyRing)
GATEWAY = web.AppKey("gateway", GatewayRuntime)


@dataclass
class Runtime:
    """What the service holds while it runs; filled in by the cleanup context."""

    settings: Settings
    engine: AsyncEngine | None = None
    transport: Transport | None = None


class _HealthCheck:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __call__(self) -> HealthReport:
        runtime = self._runtime
        database = ComponentHealth("down", "not started")
        if runtime.engine is not None:
            try:
                async with asyncio.timeout(5):
                    async with runtime.engine.connect() as conn:
                        await conn.execute(text("SELECT 1"))
                revision = await migrate.current_revision(runtime.engine)
                database = ComponentHealth("ok", f"{runtime.engine.dialect.name}, schema {revision}")
            except Exception as exc:  # any failure of the probe means the database is down
                database = ComponentHealth("down", type(exc).__name__)
        transport_state = runtime.transport.state.value if runtime.transport is not None else "stopped"
        transport = ComponentHealth(transport_state, runtime.settings.transport.value)
        return HealthReport(version=__version__, database=database, transport=transport)


def build_app(settings: Settings) -> web.Application:
    runtime = Runtime(settings)
    services = Services()
    app = create_app(
        health_check=_HealthCheck(runtime),
        services=services,
        web_settings=settings.web,
        radius_settings=settings.radius,
        utility_name=settings.utility.name,
        currency=settings.utility.currency,
    )
    if settings.web.session_secret is None:
        log.warning("web.session_secret is not set: a random one is used, so sessions end when the service restarts")

    async def resources(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database.url, pool_size=settings.database.pool_size, echo=settings.database.echo
        )
        try:
            await migrate.upgrade(engine)
            runtime.engine = engine
            app[ENGINE] = engine
            uow = app[UOW] = UnitOfWork(engine)
            services.uow = uow
            if settings.radius.enabled:
                services.radius = RadiusPasswordChecker(settings.radius)
            keys = app[KEYS] = services.keys = KeyRing(load_master_key(settings))

            async def on_gateway_event(event: GatewayEvent) -> None:
                """What the gateway learns goes to billing (the arrow points one way: gateway never
                imports billing)."""
                if isinstance(event, CommandSettled):
                    await on_command_settled(uow, event, event.at or datetime.now(UTC))

            async with running_gateway(settings, engine, keys, on_gateway_event) as gateway:
                app[GATEWAY] = gateway
                runtime.transport = gateway.transport
                log.info(
                    "smsmeter %s ready: database %s, transport %s (%s), short number %s",
                    __version__,
                    engine.dialect.name,
                    settings.transport.value,
                    gateway.transport.state.value,
                    settings.short_number,
                )
                try:
                    yield
                finally:
                    log.info("smsmeter stopping: releasing the transport and the database")
        finally:
            runtime.transport = None
            if isinstance(services.radius, RadiusPasswordChecker):
                await services.radius.close()
            services.uow = None
            runtime.engine = None
            await engine.dispose()

    app.cleanup_ctx.append(resources)
    return app
