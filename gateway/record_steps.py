"""The recorder's statements for what a batch decides beside its receipts: the submit results' parts,
attempts and steps (0:1, or 1:0 at once for a part whose receipt came in the same batch), and what a failed
receipt decides for its command. Each hands back the final states it decided; the recorder (`gateway.recorder`)
writes them with the others of the batch. Also the recorder's settings and counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gateway import command_store as store
from gateway.command_store import Final, Reschedule, SendResult, history_row
from gateway.ports import Receipt
from gateway.record_batch import accepted_history, classify, part_rows
from gateway.states import CommandState, ReceiptOutcome, RetryPolicy, Source, after_failed_receipt


@dataclass(slots=True)
class DispatchStats:
    claimed: int = 0
    submitted_parts: int = 0
    accepted: int = 0  # commands with every part accepted (0:1 or later)
    delivered: int = 0  # commands moved to 1:0
    receipts: int = 0
    receipts_parked: int = 0
    receipts_unknown: int = 0
    receipts_duplicate: int = 0
    retries: int = 0
    finals: int = 0
    batches: int = 0
    recording_failed: int = 0  # items the database refused on their own (each an alarm row)


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    throttle_pause_s: float = 1.0
    receipt_park_s: float = 30.0
    record_interval_s: float = 0.02


async def record_results(
    conn: Any,
    results: Sequence[SendResult],
    now: datetime,
    early: dict[str, Receipt],
    config: RecorderConfig,
    stats: DispatchStats,
) -> list[Final]:
    """Parts, attempts and the 0:1 step of `results`, and the 1:0 step of commands whose every part
    has its receipt in `early` (matched in memory by the recorder), in the same statements."""
    accepted, rows, history, finals = classify(results, now, config.policy, config.throttle_pause_s)
    stats.retries += sum(1 for h in history if h["source"] == Source.SMSC.value)
    await store.record_parts(conn, part_rows(results, now, early))
    deadline = now + timedelta(seconds=config.policy.ack_timeout_s)
    by_id: dict[int, SendResult] = {}
    for r in accepted:
        delivered = all(m is not None and m in early for m in r.message_ids)
        to_state = CommandState.DELIVERED if delivered else CommandState.ACCEPTED
        rows.append(Reschedule(r.command.id, r.attempt, deadline, 0, to_state))
        by_id[r.command.id] = r
    stats.accepted += len(accepted)
    left = await store.reschedule(conn, rows, now)
    for command_id, (was, state) in left.items():
        result = by_id.get(command_id)
        if result is None:
            continue
        history.extend(accepted_history(result, was == CommandState.SENDING.value and state != was, now))
        if state == CommandState.DELIVERED.value and was != state:
            history.append(
                history_row(
                    command_id,
                    CommandState.ACCEPTED,
                    CommandState.DELIVERED,
                    now,
                    Source.RECEIPT,
                    "every part delivered",
                )
            )
            stats.delivered += 1
    await store.add_history(conn, history)
    return finals


async def after_failed_receipts(
    conn: Any,
    failed: dict[int, tuple[int, ReceiptOutcome, str]],
    now: datetime,
    policy: RetryPolicy,
    stats: DispatchStats,
) -> list[Final]:
    """What a failed or expired receipt decides for its command: a retry later (with its history row), or a
    final state, handed back for the caller to write with the others."""
    finals: list[Final] = []
    retries: list[tuple[int, CommandState, datetime]] = []
    history: list[dict[str, Any]] = []
    for row in await store.commands_by_id(conn, set(failed)):
        attempt, outcome, text = failed[row.id]
        state = CommandState(row.state)
        if attempt != row.attempts or (row.claimed_until is not None and row.claimed_until > now):
            continue  # a receipt for an earlier attempt, or a resend is under way
        d = after_failed_receipt(state, outcome, attempt, policy, now)
        if d.state is not None:
            finals.append(Final(row.id, row.meter_id, row.kind, d.state, Source.RECEIPT, f"{d.detail} ({text})"))
        elif d.retry_at is not None:
            stats.retries += 1
            retries.append((row.id, state, d.retry_at))
            history.append(history_row(row.id, state, state, now, Source.RECEIPT, f"{d.detail} ({text})"))
    await store.retry_later(conn, retries, now)
    await store.add_history(conn, history)
    return finals


__all__ = ["DispatchStats", "RecorderConfig", "after_failed_receipts", "record_results"]
