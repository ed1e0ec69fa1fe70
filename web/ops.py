"""Operations endpoints: `GET /readyz` (may this process take traffic and work: database and channel ready) and
`GET /metrics` (Prometheus text format). `/healthz` (alive) is in web.health.

The checks and the exporter come from the composition root through app keys; this module knows no Prometheus.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from aiohttp import web

from telemetry import bind_ids
from web.permissions import public


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # database | transport
    ready: bool
    detail: str = ""


class ReadinessCheck(Protocol):
    async def __call__(self) -> list[Check]: ...


class MetricsExport(Protocol):
    async def __call__(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        ...


READINESS = web.AppKey("readiness", ReadinessCheck)
METRICS_EXPORT = web.AppKey("metrics_export", MetricsExport)


@public
async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[READINESS]()
    ready = all(c.ready for c in checks)
    body = {"status": "ready" if ready else "not ready", "checks": [asdict(c) for c in checks]}
    return web.json_response(body, status=200 if ready else 503)


@public  # like /healthz: for the orchestrator and the scraper; keep it off the public internet at the proxy
async def metrics(request: web.Request) -> web.Response:
    body, content_type = await request.app[METRICS_EXPORT]()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


@web.middleware
async def correlation_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every request gets a request id (the caller's X-Request-ID when it is sane, else a new one), bound for the
    request's log lines and echoed in the response."""
    given = request.headers.get("X-Request-ID", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    with bind_ids(request_id=request_id):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Request-ID"] = request_id
            raise
    response.headers["X-Request-ID"] = request_id
    return response


def setup_routes(app: web.Application, *, readiness: ReadinessCheck, export: MetricsExport) -> None:
    app[READINESS] = readiness
    app[METRICS_EXPORT] = export
    app.middlewares.insert(0, correlation_middleware)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
