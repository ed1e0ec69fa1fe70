"""Rendering pages: the templates' shared context (who is signed in, the CSRF token, the language,
formatting helpers) and the Jinja2 environment with gettext installed."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from babel.numbers import get_currency_precision

from billing.sts import grouped as sts_grouped
from web import i18n
from web.keys import CURRENCY, SERVICES, UTILITY_NAME
from web.messages import flash_message
from web.middleware import LANGUAGE, principal_of
from web.permissions import PERMISSIONS
from web.security import CSRF_FIELD, pre_session_csrf, set_pre_session_csrf

TEMPLATES = Path(__file__).with_name("templates")
PRE_CSRF = web.RequestKey("pre_csrf", str)

# Command states as operators know them, with the colour the console shows them in.
STATE_STYLES = {
    "0:0": "secondary",
    "0:1": "info",
    "1:0": "primary",
    "1:1": "success",
}


def state_style(state: str) -> str:
    return STATE_STYLES.get(state, "danger")


def consumption_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """{"period", "energy_wh"} → a chart bar in kWh (a display value: one decimal is enough)."""
    return {
        "label": point["period"][5:] if len(point["period"]) == 10 else point["period"],
        "value": round(point["energy_wh"] / 1000, 1),
    }


def money_point(point: Mapping[str, Any], currency: str) -> dict[str, Any]:
    """A chart bar of an amount in minor units → the currency's units (display only)."""
    digits = get_currency_precision(currency)
    return {"label": point["label"], "value": float(Decimal(int(point["value"])).scaleb(-digits))}


def translate_code(value: object) -> str:
    """A stored code (a status, a stage, a command kind, a role, a title marked with N_) in the reader's
    language; never %-formatted, so data can hold any character."""
    if not value:
        return ""
    text = str(value)
    translated = i18n.load_catalogs()[i18n.current_language()].gettext(text)
    return translated.replace("_", " ") if translated == text and "_" in text and " " not in text else translated


def setup_templates(app: web.Application) -> jinja2.Environment:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "xml", "svg"]),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["money"] = i18n.money
    env.filters["number"] = i18n.number
    env.filters["when"] = i18n.when
    env.filters["state_style"] = state_style
    env.filters["consumption_point"] = consumption_point
    env.filters["money_point"] = money_point
    env.filters["code"] = translate_code
    env.filters["sts_grouped"] = sts_grouped
    env.globals["LANGUAGES"] = i18n.LANGUAGES
    env.globals["CSRF_FIELD"] = CSRF_FIELD
    env.globals["flash_message"] = flash_message
    env.globals["new_request_id"] = lambda: secrets.token_urlsafe(16)
    return env


def base_context(request: web.Request) -> dict[str, Any]:
    principal = principal_of(request)
    csrf = principal.csrf_token if principal is not None and principal.csrf_token else pre_session_csrf(request)
    if principal is None:
        request[PRE_CSRF] = csrf

    def can(action: str) -> bool:
        return principal is not None and principal.role in PERMISSIONS[action]

    router = request.app.router

    def static(filename: str) -> str:
        return str(router["static"].url_for(filename=filename))

    return {
        "static": static,
        "principal": principal,
        "csrf_token": csrf,
        "lang": request.get(LANGUAGE, "en"),
        "utility_name": request.app[UTILITY_NAME],
        "currency": request.app[CURRENCY],
        "can": can,
        "path": request.path,
        "query": request.query,
        "sms_outbox": request.app[SERVICES].sms_outbox is not None,  # the simulated network's outbox page
    }


def render(
    request: web.Request, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, {**base_context(request), **(context or {})}, status=status
    )
    pre = request.get(PRE_CSRF)
    if pre:
        set_pre_session_csrf(request, response, pre)
    response.headers.setdefault("Cache-Control", "no-store")
    return response
