"""Parsing what a request brings — path ids, paging, forms — into values, or an InvalidInput naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from web.errors import InvalidInput, NotFound

MAX_LIMIT = 200


def path_id(request: web.Request, name: str = "id", what: str = "record") -> int:
    raw = request.match_info.get(name, "")
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound(what, raw)
    return int(raw)


def paging(query: Mapping[str, str], default_limit: int = 50) -> tuple[int, int]:
    return (
        bounded_int(query, "limit", default_limit, 1, MAX_LIMIT),
        bounded_int(query, "offset", 0, 0, 10**9),
    )


def bounded_int(query: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise InvalidInput(name, "must be an integer") from None
    if not low <= value <= high:
        raise InvalidInput(name, f"must be between {low} and {high}")
    return value


def text(form: Mapping[str, Any], name: str, *, required: bool = True, max_length: int = 500) -> str:
    raw = form.get(name)
    value = raw.strip() if isinstance(raw, str) else ""
    if required and not value:
        raise InvalidInput(name, "is required")
    if len(value) > max_length:
        raise InvalidInput(name, f"at most {max_length} characters")
    return value


def choice(
    form: Mapping[str, Any], name: str, allowed: tuple[str, ...] | frozenset[str], default: str | None = None
) -> str:
    raw = form.get(name)
    value = raw.strip() if isinstance(raw, str) else ""
    if not value and default is not None:
        return default
    if value not in allowed:
        raise InvalidInput(name, f"must be one of {', '.join(sorted(allowed))}")
    return value


def amount_minor(form: Mapping[str, Any], name: str, digits: int = 2) -> int:
    """A decimal amount as typed by a person ("12.50", "12,5") → integer minor units, never a float."""
    raw = text(form, name, max_length=20).replace(",", ".").replace(" ", "")
    whole, _sep, frac = raw.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > digits:
        raise InvalidInput(name, f"must be an amount with at most {digits} decimals")
    value: int = int(whole) * 10**digits + int((frac or "0").ljust(digits, "0"))
    if value <= 0:
        raise InvalidInput(name, "must be more than zero")
    return value


def safe_next(value: str | None, default: str) -> str:
    """Only local paths: never an open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default
