"""/api/v1 for the reconciliation with the payment provider: the runs, one run with its findings, a window
reconciled now (answered 202 at once: the run works in the background, its resource shows it grow), and a run
a restart or a stop cut off carried on from where it stopped. Handlers parse and call `web.reconciliation`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from payments.reconcile import KINDS
from web import reconciliation
from web.api.json import read_json, respond
from web.api.openapi import _ID, _PAGING, _ok, _problem, _q
from web.api.openapi_registry import _body, _ref, operation
from web.errors import InvalidInput
from web.middleware import require_principal
from web.params import choice, paging, path_id
from web.permissions import requires
from web.security import client_address

PREFIX = "/api/v1"


def _run_json(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "provider", "window_start", "window_end", "started_at", "finished_at", "triggered_by", "status")
    out = {k: run[k] for k in keys}
    out.update(phase=run["phase"], looked_at=int(run["items"]), counts=run["counts"], report_path=run["report_path"])
    if "findings" in run:
        out["found"] = run["found"]
        out["findings"] = [{k: v for k, v in f.items() if k != "run_id"} for f in run["findings"]]
        out["findings_total"] = run["findings_total"]
    return out


@requires("payments.read")
async def run_list(request: web.Request) -> web.Response:
    limit, offset = paging(request.query)
    runs, total = await reconciliation.page(request, limit=limit, offset=offset)
    return respond({"items": [_run_json(r) for r in runs], "total": total, "limit": limit, "offset": offset})


@requires("payments.reconcile")
async def start_run(request: web.Request) -> web.Response:
    """`{"from": "YYYY-MM-DD" | ISO time, "to": …}`: reconcile that window now."""
    body = await read_json(request)
    window = [body.get("from"), body.get("to")]
    for name, value in zip(("from", "to"), window, strict=True):
        if not isinstance(value, str) or not 0 < len(value) <= 40:
            raise InvalidInput(name, "a date (YYYY-MM-DD) or an ISO time")
    actor = require_principal(request).actor(client_address(request))
    run_id = await reconciliation.start(request, str(window[0]), str(window[1]), actor)
    response = respond(_run_json(await reconciliation.one(request, run_id, limit=0)), status=202)
    response.headers["Location"] = f"{PREFIX}/reconciliations/{run_id}"
    return response


@requires("payments.read")
async def run_detail(request: web.Request) -> web.Response:
    run_id = path_id(request, what="reconciliation run")
    kind = choice(request.query, "kind", ("", *KINDS), default="") or None
    limit, offset = paging(request.query, 100)
    return respond(_run_json(await reconciliation.one(request, run_id, kind=kind, limit=limit, offset=offset)))


@requires("payments.reconcile")
async def resume_run(request: web.Request) -> web.Response:
    run_id = path_id(request, what="reconciliation run")
    run = await reconciliation.resume(request, run_id, require_principal(request).actor(client_address(request)))
    return respond(_run_json(run), status=200 if run["status"] == "finished" else 202)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/reconciliations", run_list)
    r.add_post(f"{PREFIX}/reconciliations", start_run)
    r.add_get(f"{PREFIX}/reconciliations/{{id}}", run_detail)
    r.add_post(f"{PREFIX}/reconciliations/{{id}}/resume", resume_run)


_AT = {"type": "string", "format": "date-time"}
_NAT = {"type": ["string", "null"], "format": "date-time"}
_NMINOR = {"type": ["integer", "null"], "description": "minor units"}
_COUNTS = {"type": "object", "properties": {k: {"type": "integer"} for k in KINDS}}
SCHEMAS: dict[str, Any] = {
    "ReconciliationFinding": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": list(KINDS)},
            "provider": {"type": "string"},
            "provider_ref": {"type": "string", "description": "the provider's payment (PaymentIntent) id"},
            "reference": {"type": "string", "description": "our top-up reference"},
            "currency": {"type": "string"},
            "our_amount_minor": _NMINOR,
            "their_amount_minor": _NMINOR,
            "fee_minor": _NMINOR,
            "command_state": {"type": "string", "description": "the credit command's state (not_delivered)"},
            "command_now": {
                "type": ["string", "null"],
                "description": "the credit command's state now, for a top-up here that has one",
            },
            "detail": {"type": "string"},
        },
    },
    "ReconciliationRun": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "provider": {"type": "string"},
            "window_start": _AT,
            "window_end": _AT,
            "started_at": _AT,
            "finished_at": _NAT,
            "triggered_by": {"type": "string", "description": "system:daily, cli:reconcile, operator:<name> …"},
            "status": {
                "type": "string",
                "enum": ["running", "stopped", "finished"],
                "description": "stopped: a restart or a stop cut it off; it carries on (resume, or the daily job)",
            },
            "phase": {"type": "string", "enum": ["intents", "ours", "delivery", "done"]},
            "looked_at": {"type": "integer", "description": "payments looked at so far"},
            "counts": {**_COUNTS, "description": "by kind, once finished"},
            "report_path": {"type": ["string", "null"], "description": "the XLSX report written at the end"},
            "found": {**_COUNTS, "description": "findings so far by kind (one run's resource only)"},
            "findings": {"type": "array", "items": _ref("ReconciliationFinding")},
            "findings_total": {"type": "integer"},
        },
    },
}
_RUN_PAGE = {
    "allOf": [
        {"$ref": "#/components/schemas/Page"},
        {"type": "object", "properties": {"items": {"type": "array", "items": _ref("ReconciliationRun")}}},
    ]
}
PATHS: dict[str, Any] = {
    f"{PREFIX}/reconciliations": {
        "get": operation(
            "listReconciliations",
            "Reconciliation runs with the payment provider, newest first, with their status and counts",
            "payments",
            "payments.read",
            {**_ok(_RUN_PAGE), **_problem("422", "a filter is malformed")},
            parameters=_PAGING,
        ),
        "post": operation(
            "startReconciliation",
            "Reconcile a window with the payment provider now: answered at once, the run works in the background",
            "payments",
            "payments.reconcile",
            {
                **_ok(_ref("ReconciliationRun"), "the run, started", "202"),
                **_problem("404", "no payment provider to reconcile with here (stripe.api_key)"),
                **_problem("422", "the window cannot be read, is empty or longer than 92 days"),
            },
            body=_body(
                {
                    "type": "object",
                    "required": ["from", "to"],
                    "properties": {
                        "from": {"type": "string", "description": "UTC: YYYY-MM-DD or an ISO time"},
                        "to": {"type": "string", "description": "UTC: YYYY-MM-DD (that whole day included) or ISO"},
                    },
                }
            ),
            description=(
                "Payments paid at the provider and never credited here (a webhook that never came) are credited "
                "through the webhook path, once; the other findings are listed for a person. One process at a time "
                "works on a run; the daily job carries on a run a restart cut off."
            ),
        ),
    },
    f"{PREFIX}/reconciliations/{{id}}": {
        "get": operation(
            "getReconciliation",
            "One reconciliation run and a page of its findings (`kind`; without it, every kind but matched)",
            "payments",
            "payments.read",
            {**_ok(_ref("ReconciliationRun")), **_problem("404", "no such run"), **_problem("422", "unknown kind")},
            parameters=[*_ID, _q("kind", "one kind of finding", {"type": "string", "enum": list(KINDS)}), *_PAGING],
        )
    },
    f"{PREFIX}/reconciliations/{{id}}/resume": {
        "post": operation(
            "resumeReconciliation",
            "Carry on a run a restart or a stop cut off, from where it stopped (a finished run answers 200 as it is)",
            "payments",
            "payments.reconcile",
            {
                **_ok(_ref("ReconciliationRun"), "the run, carried on in the background", "202"),
                **_problem("404", "no such run, or no payment provider to reconcile with here"),
                **_problem("409", "another process is working on it"),
            },
            parameters=_ID,
        )
    },
}


def merge_into(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    for path, item in PATHS.items():
        paths[path] = {**paths.get(path, {}), **item}
    schemas.update(SCHEMAS)
