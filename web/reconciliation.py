"""What the console and the API share for the reconciliation with the payment provider: the reconciler the
composition root set up (Stripe's API, or the payment simulator's listing), and starting or carrying on a run
in the background (the request answers at once with the run; its page and its API resource show it grow)."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from payments import reconcile_runs
from payments.errors import RunBusy
from store.audit import Actor
from web.errors import NotFound
from web.jobs import JOBS
from web.keys import CLOCK
from web.middleware import uow_of
from web.webhooks import PAYMENT_SERVICES, Reconciler


def reconciler_of(request: web.Request) -> Reconciler:
    reconciler = request.app[PAYMENT_SERVICES].reconciler
    if reconciler is None:  # this installation has no provider to reconcile with
        raise web.HTTPNotFound(text="no payment provider to reconcile with here: set stripe.api_key")
    return reconciler


def available(request: web.Request) -> bool:
    return request.app[PAYMENT_SERVICES].reconciler is not None


async def start(request: web.Request, start_text: str, end_text: str, actor: Actor) -> int:
    """Open a run of the window typed and work on it in the background; its id."""
    begin, end = reconcile_runs.window_of(start_text, end_text)
    reconciler = reconciler_of(request)
    run_id = await reconciler.open(begin, end, actor=actor)
    request.app[JOBS].start(f"reconciliation {run_id}", _quietly(reconciler, run_id, None))
    return run_id


async def resume(request: web.Request, run_id: int, actor: Actor) -> dict[str, Any]:
    """Carry on a run a restart or a stop left unfinished, in the background; the run as it is now. Raises
    RunBusy when it is being worked on, RunNotFound when there is no such run."""
    reconciler = reconciler_of(request)
    run = await one(request, run_id)
    if run["status"] == "running":
        raise RunBusy(run_id, run["lease_until"])
    if run["status"] == "stopped":
        request.app[JOBS].start(f"reconciliation {run_id}", _quietly(reconciler, run_id, actor))
    return run


async def _quietly(reconciler: Reconciler, run_id: int, actor: Actor | None) -> None:
    with contextlib.suppress(RunBusy):  # another process took it between the page and the job: it carries it on
        await reconciler.carry_on(run_id, actor=actor)


async def page(request: web.Request, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    async with uow_of(request).connect() as conn:
        return await reconcile_runs.recent_runs(conn, request.app[CLOCK](), limit=limit, offset=offset)


async def one(
    request: web.Request, run_id: int, *, kind: str | None = None, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    reconciler = request.app[PAYMENT_SERVICES].reconciler
    commands = reconciler.commands if reconciler is not None else None
    async with uow_of(request).connect() as conn:
        run = await reconcile_runs.run_with_findings(
            conn, run_id, request.app[CLOCK](), kind=kind, limit=limit, offset=offset, commands=commands
        )
    if run is None:
        raise NotFound("reconciliation run", run_id)
    return run
