"""Every table, on the shared metadata. One module per area; `store.schema` imports them all so that
`metadata` is complete (Alembic and the schema test rely on it)."""

from store.metadata import metadata
from store.schema import (
    auth,
    commands,
    consumption,
    events,
    ledger,
    notices,
    payments,
    reading_plans,
    registry,
    self_service,
    sts,
)

__all__ = [
    "auth",
    "commands",
    "consumption",
    "events",
    "ledger",
    "metadata",
    "notices",
    "payments",
    "reading_plans",
    "registry",
    "self_service",
    "sts",
]
