"""The port between a long scheduled job and whoever runs it: the job reports each committed batch and asks,
between batches, whether it should stop. A job that stops early has committed what it did and resumes where it
stopped on its next run (its batches skip what is done), so stopping never waits on a fixed timeout.

    async def issue_invoices(..., progress: JobProgress = UNWATCHED):
        while not progress.stop_requested:
            ...one batch, one transaction...
            progress.advanced(len(batch))
"""

from __future__ import annotations

from typing import Protocol


class JobProgress(Protocol):
    def advanced(self, items: int) -> None:
        """`items` more are done and committed."""

    @property
    def stop_requested(self) -> bool:
        """True once the service is stopping: finish the batch in hand, then return."""


class _Unwatched:
    def advanced(self, items: int) -> None:
        pass

    @property
    def stop_requested(self) -> bool:
        return False


UNWATCHED: JobProgress = _Unwatched()
