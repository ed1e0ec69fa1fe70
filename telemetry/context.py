"""Correlation ids carried by the running task (contextvars), so every log line written while a command, a payment
or a meter is being handled names it, across awaits and in tasks started from there.

    with bind_ids(command_id=42, meter="88000000000000000017"):
        log.info("submitted")          # -> {"msg": "submitted", "command_id": 42, "meter": "8800…", ...}

Ids bound inside replace the same ids bound outside for the duration of the block; the others stay.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

CORRELATION_KEYS = ("request_id", "command_id", "payment_id", "event_id", "meter", "meter_id", "subscriber")

_ids: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "smsmeter_correlation_ids", default=MappingProxyType({})
)


def current_ids() -> Mapping[str, object]:
    """The correlation ids bound in the running context (read-only)."""
    return _ids.get()


@contextmanager
def bind_ids(**ids: object) -> Iterator[None]:
    """Bind correlation ids (`command_id`, `payment_id`, `meter`, ...) for the block; None values are skipped."""
    unknown = set(ids) - set(CORRELATION_KEYS)
    if unknown:
        raise ValueError(f"unknown correlation ids: {', '.join(sorted(unknown))}")
    merged = {**_ids.get(), **{k: v for k, v in ids.items() if v is not None}}
    token = _ids.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _ids.reset(token)
