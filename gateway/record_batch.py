"""One recording batch of the recorder (`gateway.recorder`): what it holds (send results, final states,
receipts with their SMSC's futures), how it is halved when the database refuses it, and the part and
history rows its send results write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.command_store import Final, Reschedule, SendResult, history_row
from gateway.errors import InvalidPart, NotConnected, SmscRejected, SubmitTimeout, Throttled
from gateway.ports import Receipt
from gateway.states import CommandState, RetryPolicy, Source, after_submit_failure, after_throttle


@dataclass(slots=True)
class Batch:
    """What one recording transaction takes: send results, final states, receipts with their SMSC's futures."""

    results: list[SendResult]
    finals: list[Final]
    receipts: list[tuple[Receipt, asyncio.Future[None] | None]]

    @property
    def size(self) -> int:
        return len(self.results) + len(self.finals) + len(self.receipts)

    def receipt_values(self) -> list[Receipt]:
        return [r for r, _ in self.receipts]

    def halves(self) -> tuple[Batch, Batch]:
        items: list[tuple[str, Any]] = [
            *(("r", x) for x in self.results),
            *(("f", x) for x in self.finals),
            *(("d", x) for x in self.receipts),
        ]
        middle = len(items) // 2
        return Batch.of(items[:middle]), Batch.of(items[middle:])

    @staticmethod
    def of(items: Sequence[tuple[str, Any]]) -> Batch:
        return Batch(
            [x for k, x in items if k == "r"], [x for k, x in items if k == "f"], [x for k, x in items if k == "d"]
        )

    @staticmethod
    def joined(batches: Sequence[Batch]) -> Batch:
        return Batch(
            [x for b in batches for x in b.results],
            [x for b in batches for x in b.finals],
            [x for b in batches for x in b.receipts],
        )


def accepted_history(r: SendResult, moved: bool, now: datetime) -> list[dict[str, Any]]:
    """The history row of an accepted attempt: 0:0 → 0:1 when it `moved` the command, a same-state row for a
    resend (attempt > 1) that did not, none otherwise."""
    n = len(r.bodies)
    if moved:
        detail = f"attempt {r.attempt}: {n} part{'s' if n > 1 else ''} accepted, "
        detail += f"id {', '.join(m or '' for m in r.message_ids)}"
        if r.late_seqs:
            detail += " (submit_sm_resp after the submit timeout)"
        return [history_row(r.command.id, CommandState.SENDING, CommandState.ACCEPTED, now, Source.SMSC, detail)]
    if r.attempt > 1:
        detail = f"attempt {r.attempt} accepted (same frame, counter {r.command.counter})"
        return [history_row(r.command.id, r.command.state, r.command.state, now, Source.SMSC, detail)]
    return []


def part_rows(results: Sequence[SendResult], now: datetime, early: Mapping[str, Receipt]) -> list[dict[str, Any]]:
    """The command_parts rows of one attempt per result (a part the SMSC did not take is "rejected", or
    "throttled" when it was only not taken now); a part whose receipt is in `early` is already 1:0."""
    part_rows: list[dict[str, Any]] = []
    for r in results:
        not_taken = "throttled" if isinstance(r.error, Throttled | NotConnected) else "rejected"
        for seq, ((body, has_udh), message_id, status) in enumerate(
            zip(r.bodies, r.message_ids, r.statuses, strict=True), start=1
        ):
            if r.late_seqs and seq not in r.late_seqs:
                continue  # written by the attempt's own result (and maybe delivered since)
            receipt = early.get(message_id) if message_id is not None and r.error is None else None
            if receipt is not None:
                state, delivered_at = CommandState.DELIVERED.value, receipt.done_at or now
                smsc_status = receipt.error_code if receipt.error_code is not None else status
            else:
                state = CommandState.ACCEPTED.value if message_id is not None else not_taken
                delivered_at, smsc_status = None, status
            part_rows.append(
                {
                    "command_id": r.command.id,
                    "seq": seq,
                    "body": body,
                    "has_udh": int(has_udh),
                    "attempt": r.attempt,
                    "message_id": message_id,
                    "state": state,
                    "smsc_status": smsc_status,
                    "submitted_at": r.at,
                    "delivered_at": delivered_at,
                }
            )
    return part_rows


def classify(
    results: Sequence[SendResult], now: datetime, policy: RetryPolicy, throttle_pause_s: float
) -> tuple[list[SendResult], list[Reschedule], list[dict[str, Any]], list[Final]]:
    """Split send results: accepted ones, and for the others the reschedule rows, history rows and
    finals their failure calls for (`gateway.states`); a history row from the SMSC is a retry planned."""
    accepted: list[SendResult] = []
    reschedule: list[Reschedule] = []
    history: list[dict[str, Any]] = []
    finals: list[Final] = []
    for r in results:
        c = r.command
        if r.late_seqs and r.error is not None:
            continue  # a late id while other parts of the attempt still have none: only its part row
        if r.error is None:
            accepted.append(r)
        elif isinstance(r.error, Throttled | NotConnected):
            # not an attempt when the SMSC took none of its parts: the attempts go back one
            d = after_throttle(now, throttle_pause_s)
            undo = all(m is None for m in r.message_ids)
            reschedule.append(Reschedule(c.id, r.attempt, d.retry_at, None, undo=undo))
        elif isinstance(r.error, InvalidPart):  # it can never be one SMS: resending will not help
            detail = f"not sendable: {r.error.reason}"
            finals.append(Final(c.id, c.meter_id, c.kind, CommandState.FAILED, Source.DISPATCHER, detail))
            reschedule.append(Reschedule(c.id, r.attempt, None, None))
        else:
            status = r.error.status if isinstance(r.error, SmscRejected) else None
            reason = r.error.name if isinstance(r.error, SmscRejected) else type(r.error).__name__
            if isinstance(r.error, SubmitTimeout):
                reason = "no submit_sm_resp"
            d = after_submit_failure(r.attempt, policy, now, status=status, reason=reason)
            if d.state is not None:
                finals.append(Final(c.id, c.meter_id, c.kind, d.state, Source.SMSC, d.detail, status))
                reschedule.append(Reschedule(c.id, r.attempt, None, status))
            else:
                reschedule.append(Reschedule(c.id, r.attempt, d.retry_at, status))
                history.append(history_row(c.id, c.state, c.state, now, Source.SMSC, d.detail))
    return accepted, reschedule, history, finals


__all__ = ["Batch", "accepted_history", "classify", "part_rows"]
