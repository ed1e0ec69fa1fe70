"""Console pages of self-service on the short number: scratch-card vouchers (the batches, a form that makes
one — the codes are shown once, on a page to print — and the withdrawal of a batch or one code) and the keyword
SMS subscribers sent, with what was answered. Parses the form, calls the use case (shared with /api/v1),
renders."""

from __future__ import annotations

from aiohttp import web

from billing import self_service
from billing import vouchers as voucher_use
from billing.rules.self_service import printed
from web.api.vouchers import generate, void
from web.middleware import uow_of
from web.params import amount_minor, bounded_int, text
from web.permissions import requires
from web.render import render


@requires("vouchers.read")
async def vouchers_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        batches = await voucher_use.voucher_batches_list(conn)
    return render(request, "console/vouchers.html", {"batches": batches, "made": None, "voided": None})


@requires("vouchers.generate")
async def create_batch(request: web.Request) -> web.Response:
    form = await request.post()
    count = bounded_int(form, "count", 0, 1, voucher_use.MAX_BATCH)
    batch = await generate(request, count, amount_minor(form, "amount"), text(form, "note", required=False) or None)
    async with uow_of(request).connect() as conn:
        batches = await voucher_use.voucher_batches_list(conn)
    made = {"id": batch.id, "amount": batch.amount, "codes": [printed(c) for c in batch.codes]}
    return render(request, "console/vouchers.html", {"batches": batches, "made": made, "voided": None})


@requires("vouchers.void")
async def void_vouchers(request: web.Request) -> web.Response:
    """Withdraw a batch (its row's button) or one code (the form under the table)."""
    form = await request.post()
    reason = text(form, "reason")
    code = text(form, "code", required=False) or None
    batch_id = None if code is not None else bounded_int(form, "batch_id", 0, 1, 2**62)
    done = await void(request, reason, batch_id=batch_id, code=code)
    async with uow_of(request).connect() as conn:
        batches = await voucher_use.voucher_batches_list(conn)
    return render(request, "console/vouchers.html", {"batches": batches, "made": None, "voided": done})


@requires("communication.read")
async def sms_requests_page(request: web.Request) -> web.Response:
    async with uow_of(request).connect() as conn:
        rows = await self_service.sms_requests_of(conn, limit=200)
    return render(request, "console/sms_requests.html", {"rows": rows})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/console/sms-requests", sms_requests_page)
    app.router.add_get("/console/vouchers", vouchers_page)
    app.router.add_post("/console/vouchers", create_batch)
    app.router.add_post("/console/vouchers/void", void_vouchers)
