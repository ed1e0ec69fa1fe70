"""`GET /healthz`: is the service alive, and in what state are its database and transport.

Liveness only: it answers 200 whenever the process can answer at all ("degraded" in the body while the
database is down), so an orchestrator does not restart a process that is waiting for its database to come back.
Whether the process should take traffic is `/readyz` (web.ops), which answers 503 then."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from aiohttp import web

from web.permissions import public


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    state: str  # ok | down | connecting | ...
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HealthReport:
    version: str
    database: ComponentHealth
    transport: ComponentHealth

    @property
    def ok(self) -> bool:
        return self.database.state == "ok"


class HealthCheck(Protocol):
    async def __call__(self) -> HealthReport: ...


HEALTH_CHECK = web.AppKey("health_check", HealthCheck)


@public
async def healthz(request: web.Request) -> web.Response:
    report = await request.app[HEALTH_CHECK]()
    body = {"status": "ok" if report.ok else "degraded", **asdict(report)}
    return web.json_response(body)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
