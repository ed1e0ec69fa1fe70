"""What every part may use to be observed: correlation ids for the logs, and the small port through which a part
reports its measurements. Standard library only; the composition root supplies the Prometheus implementation."""

from telemetry.context import bind_ids, current_ids
from telemetry.jobs import UNWATCHED, JobProgress
from telemetry.ports import NO_METRICS, Observer

__all__ = ["NO_METRICS", "UNWATCHED", "JobProgress", "Observer", "bind_ids", "current_ids"]
