"""Console pages of the reconciliation with the payment provider: the runs (status, counts, a form to reconcile
a window now), and one run with its findings by kind (what a webhook missed and was credited, what is paid on
one side only, what differs in amount, what was paid and not delivered to the meter), carried on from where it
stopped when a restart or a stop cut it off. Handlers parse and call `web.reconciliation`."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from payments.reconcile import KINDS
from web import reconciliation
from web.keys import CLOCK
from web.middleware import require_principal
from web.params import choice, paging, path_id, text
from web.permissions import requires
from web.render import render
from web.security import client_address


@requires("payments.read")
async def runs_page(request: web.Request) -> web.Response:
    limit, offset = paging(request.query, 25)
    runs, total = await reconciliation.page(request, limit=limit, offset=offset)
    today = request.app[CLOCK]().date()
    return render(
        request,
        "console/reconciliation.html",
        {
            "runs": runs,
            "total": total,
            "kinds": KINDS,
            "available": reconciliation.available(request),
            "default_from": (today - timedelta(days=2)).isoformat(),
            "default_to": today.isoformat(),
            "live": any(r["status"] == "running" for r in runs),
        },
    )


@requires("payments.reconcile")
async def start_run(request: web.Request) -> web.Response:
    form = await request.post()
    actor = require_principal(request).actor(client_address(request))
    run_id = await reconciliation.start(
        request, text(form, "from", max_length=40), text(form, "to", max_length=40), actor
    )
    raise web.HTTPSeeOther(f"/console/reconciliation/{run_id}?ok=reconciliation_started")


@requires("payments.read")
async def run_page(request: web.Request) -> web.Response:
    run_id = path_id(request, what="reconciliation run")
    kind = choice(request.query, "kind", ("", *KINDS), default="") or None
    limit, offset = paging(request.query, 100)
    run = await reconciliation.one(request, run_id, kind=kind, limit=limit, offset=offset)
    return render(
        request,
        "console/reconciliation_run.html",
        {"run": run, "kinds": KINDS, "kind": kind or "", "live": run["status"] == "running", "offset": offset},
    )


@requires("payments.reconcile")
async def resume_run(request: web.Request) -> web.Response:
    run_id = path_id(request, what="reconciliation run")
    await reconciliation.resume(request, run_id, require_principal(request).actor(client_address(request)))
    raise web.HTTPSeeOther(f"/console/reconciliation/{run_id}?ok=reconciliation_resumed")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/reconciliation", runs_page)
    r.add_post("/console/reconciliation", start_run)
    r.add_get("/console/reconciliation/{id}", run_page)
    r.add_post("/console/reconciliation/{id}/resume", resume_run)
