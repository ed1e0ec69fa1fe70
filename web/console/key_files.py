"""Console pages for meters as the utility receives them (docs/operations.md §7b): the meters in stock,
the admins' forms to import a manufacturer's key file (upload) and to make a batch's key file for the
factory (download), and a meter's protocol profile on its card. Each action parses the form, calls one
use case of `billing.provisioning`, redirects (or renders the problems of a refused file)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing import meter_registry, provisioning
from billing.rules.key_file import KeyFileRejected, parse_transport_key
from web.errors import InvalidInput
from web.keys import CLOCK
from web.middleware import keys_of, require_principal, uow_of
from web.params import choice, path_id, text
from web.permissions import requires
from web.queries.stock import stock_meters
from web.render import render
from web.security import client_address

MAX_UPLOAD_BYTES = 20_000_000


def _actor(request: web.Request) -> Any:
    return require_principal(request).actor(client_address(request))


async def _page(request: web.Request, *, rejected: KeyFileRejected | None = None, status: int = 200) -> web.Response:
    async with uow_of(request).connect() as conn:
        items, total = await stock_meters(conn)
    return render(request, "console/stock.html", {"stock": items, "total": total, "rejected": rejected}, status=status)


@requires("meters.read")
async def stock_page(request: web.Request) -> web.Response:
    return await _page(request)


def _upload(form: Any, name: str) -> tuple[bytes, str]:
    field = form.get(name)
    if field is None or not hasattr(field, "file"):
        raise InvalidInput(name, "choose a file")
    data = field.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(name, f"at most {MAX_UPLOAD_BYTES // 1_000_000} MB")
    return data, str(field.filename or "upload")[:200]


def _transport_key(form: Any) -> bytes:
    if form.get("transport_key_file") is not None and hasattr(form.get("transport_key_file"), "file"):
        data, _ = _upload(form, "transport_key_file")
        if data.strip():
            return parse_transport_key(data.decode("ascii", "replace"))
    return parse_transport_key(text(form, "transport_key", max_length=80))


@requires("meters.keys")
async def import_key_file(request: web.Request) -> web.Response:
    form = await request.post()
    data, name = _upload(form, "key_file")
    try:
        result = await provisioning.import_key_file(
            uow_of(request),
            _actor(request),
            data,
            _transport_key(form),
            file_name=name,
            master_key=keys_of(request),
            now=request.app[CLOCK](),
        )
    except KeyFileRejected as exc:
        return await _page(request, rejected=exc, status=422)
    raise web.HTTPSeeOther(f"/console/meters?ok=keys_imported&created={result.created}&updated={result.updated}")


@requires("meters.keys")
async def export_key_file(request: web.Request) -> web.Response:
    form = await request.post()
    codes = text(form, "meter_codes", max_length=400_000)
    entries = [
        (n, {"meter_code": line.strip(), "profile": choice(form, "profile", ("binary", "xml"), default="binary")})
        for n, line in enumerate(codes.replace(",", "\n").splitlines(), start=1)
        if line.strip()
    ]
    try:
        batch = provisioning.check_batch(entries)
        content = await provisioning.export_key_file(
            uow_of(request),
            _actor(request),
            batch,
            _transport_key(form),
            master_key=keys_of(request),
            now=request.app[CLOCK](),
            as_json=form.get("format") == "json",
            name="console",
        )
    except KeyFileRejected as exc:
        return await _page(request, rejected=exc, status=422)
    suffix = "json" if form.get("format") == "json" else "csv"
    return web.Response(
        body=content,
        content_type="application/json" if suffix == "json" else "text/csv",
        headers={"Content-Disposition": f'attachment; filename="keys-{batch[0].meter_code}.{suffix}"'},
    )


@requires("meters.write")
async def set_profile(request: web.Request) -> web.Response:
    meter_id = path_id(request, what="meter")
    form = await request.post()
    profile = choice(form, "profile", ("binary", "xml"), default="")
    async with uow_of(request).begin() as conn:
        await meter_registry.set_meter_profile(conn, _actor(request), meter_id, profile, request.app[CLOCK]())
    raise web.HTTPSeeOther(f"/console/meters/{meter_id}?ok=meter_profile")


def setup_routes(app: web.Application) -> None:
    """Registered before the meter card's routes: `/console/meters/key-files` is not a meter id."""
    r = app.router
    r.add_get("/console/meters", stock_page)
    r.add_post("/console/meters/key-files", import_key_file)
    r.add_post("/console/meters/key-files/export", export_key_file)
    r.add_post("/console/meters/{id}/profile", set_profile)
