"""The one error middleware: every error our packages raise, and every HTTP error, becomes an RFC 9457
problem document (`application/problem+json`) under /api, and an error page elsewhere. Unexpected
errors are logged with their traceback and answered 500 without details."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from billing import errors as billing_errors
from billing.topup import PaymentNotApplied
from config.errors import ConfigError
from gateway import errors as gateway_errors
from meter_protocol import errors as protocol_errors
from payments import errors as payments_errors
from store.errors import StoreError
from web.errors import InvalidInput, NotAuthenticated, TooManyAttempts, WebError
from web.i18n import _

log = logging.getLogger("smsmeter.web")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://smsmeter.org/problems/"
_RESERVED = frozenset({"type", "title", "status", "detail", "instance"})

# Our packages' root errors (and notable subclasses) → HTTP status and title. The first match wins, so
# subclasses come before their roots. Errors of other areas are added here as their packages land.
ERROR_MAP: list[tuple[type[BaseException], int, str]] = [
    (billing_errors.NotFound, 404, "Not found"),
    (payments_errors.RunNotFound, 404, "Unknown reconciliation run"),
    (payments_errors.RunBusy, 409, "Reconciliation run being worked on"),
    (payments_errors.WindowInvalid, 422, "Invalid reconciliation window"),
    (billing_errors.Conflict, 409, "Conflict"),
    (billing_errors.InsufficientFunds, 409, "Insufficient funds"),
    (PaymentNotApplied, 503, "Payment not applied yet"),
    (billing_errors.BillingError, 422, "Not accepted by billing"),
    (gateway_errors.UnknownMeter, 404, "Unknown meter"),
    (gateway_errors.CommandNotFound, 404, "Unknown command"),
    (gateway_errors.CannotCancel, 409, "Cannot cancel"),
    (gateway_errors.OutboxError, 422, "Command not accepted"),
    (gateway_errors.GatewayError, 502, "Gateway error"),
    (protocol_errors.ProtocolError, 422, "Invalid meter message"),
    (StoreError, 500, "Storage error"),
    (ConfigError, 500, "Configuration error"),
]


def register_error(error: type[BaseException], status: int, title: str) -> None:
    """Map another package's error to a status (the composition root or the package's web glue calls it)."""
    ERROR_MAP.insert(0, (error, status, title))


def _slug(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("-")
        out.append(ch.lower())
    return "".join(out)


def wants_json(request: web.Request) -> bool:
    if request.path.startswith("/api/") or request.path.endswith(".json"):
        return True
    accept = request.headers.get("Accept", "")
    return "json" in accept and "html" not in accept


def problem_response(
    request: web.Request, status: int, title: str, detail: str, type_slug: str, **extra: Any
) -> web.Response:
    body = {
        "type": PROBLEM_BASE + type_slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        **extra,
    }
    return web.json_response(body, status=status, content_type=PROBLEM_JSON)


def _page(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    try:
        from web.render import render

        response = render(request, "error.html", {"status": status, "title": _(title), "detail": detail}, status=status)
    except Exception:  # the error page itself failed (e.g. templates missing): plain text, never a loop
        log.exception("error page failed")
        response = web.Response(text=f"{status} {title}\n{detail}\n", status=status)
    return response


def _answer(request: web.Request, status: int, title: str, detail: str, slug: str, **extra: Any) -> web.Response:
    if wants_json(request):
        return problem_response(request, status, title, detail, slug, **extra)
    return _page(request, status, title, detail)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except NotAuthenticated as exc:
        if wants_json(request):
            response = problem_response(request, 401, exc.title, exc.detail or exc.title, "not-authenticated")
            response.headers["WWW-Authenticate"] = 'Bearer realm="smsmeter"'
            return response
        login = "/portal/login" if request.path.startswith("/portal") else "/login"
        raise web.HTTPSeeOther(f"{login}?next={request.path_qs}" if request.method == "GET" else login) from None
    except WebError as exc:
        log.info("%s %s: %s %s", request.method, request.path, exc.status, exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, InvalidInput):
            extra["errors"] = [{"field": exc.field, "reason": exc.reason}]
        response = _answer(request, exc.status, exc.title, str(exc), _slug(type(exc).__name__), **extra)
        if isinstance(exc, TooManyAttempts):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _answer(request, exc.status, exc.reason, exc.text or exc.reason, f"http-{exc.status}")
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception as exc:
        for error, status, title in ERROR_MAP:
            if isinstance(exc, error):
                if status >= 500:
                    log.exception("%s %s failed: %s", request.method, request.path, exc)
                else:
                    log.info("%s %s: %s %s", request.method, request.path, status, exc)
                reason = {
                    k: v
                    for k, v in vars(exc).items()
                    if status < 500 and isinstance(v, str | int | float | bool) and k not in _RESERVED
                }
                detail = str(exc) if status < 500 else title
                return _answer(request, status, title, detail, _slug(type(exc).__name__), **reason)
        log.exception("%s %s failed", request.method, request.path)
        return _answer(request, 500, "Internal error", "Internal error", "internal-error")
