"""Logging set-up: plain lines for people, or one JSON object a line for collectors.

Every record carries the correlation ids bound in its task (`telemetry.bind_ids`: command, payment, meter, ...)
and those given with `extra=`; the service's role and process id are on every JSON line, so lines from several
processes sharing one database can be told apart and joined on the ids.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from config import Settings
from telemetry.context import CORRELATION_KEYS, current_ids


class CorrelationFilter(logging.Filter):
    """Copies the task's correlation ids onto each record (ids passed with `extra=` win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_ids().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str = "all") -> None:
        super().__init__()
        self._role = role
        self._pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "role": self._role,
            "pid": self._pid,
        }
        for key in CORRELATION_KEYS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in CORRELATION_KEYS if hasattr(record, k))
        return f"{line} [{ids}]" if ids else line


def configure_logging(settings: Settings, role: str = "all") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(JsonFormatter(role) if settings.log.json else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log.level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
