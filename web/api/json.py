"""JSON for the API: UTC times as ISO 8601 with `Z`, bytes as hex, no floats for money (minor units)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from web.errors import InvalidInput


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def respond(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=dumps)


def parse_time(query: Any, name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(name, "must be an ISO 8601 time, e.g. 2026-01-31T00:00:00Z") from None
    if value.tzinfo is None:
        raise InvalidInput(name, "must carry a time zone (Z for UTC)")
    return value.astimezone(UTC)


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        from web.errors import UnsupportedMediaType

        raise UnsupportedMediaType(request.content_type)
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    return body
