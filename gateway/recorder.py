"""The recorder: writes what came back from the transport — submit results, delivery receipts and the
final states the claim loop decided — in batches, one transaction each.

What arrives together goes to the database together (a few statements per batch, not per command,
`gateway.command_store`). States move as `gateway.states` decides, every transition with its history row,
only ever forward. A receipt that arrives in the same batch as its submit result is matched in memory:
the part is written once, already delivered, and the command moves 0:0 → 1:0 in one UPDATE with both
history rows (`_match_in_batch`).

Receipts are matched to parts by the SMSC message id. A receipt that arrives before its submit_sm_resp
has been recorded (SMSCs do that) is parked and matched again after each batch, for `receipt_park_s`,
before it is logged as unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import command_store as store
from gateway.command_store import Final, PartMark, Reschedule, SendResult, history_row
from gateway.errors import InvalidPart, NotConnected, SmscRejected, SubmitTimeout, Throttled
from gateway.events import CommandSettled, EventHandler, GatewayEvent, publish
from gateway.ports import Receipt
from gateway.states import (
    CommandState,
    ReceiptOutcome,
    RetryPolicy,
    Source,
    after_failed_receipt,
    after_submit_failure,
    after_throttle,
    receipt_outcome,
)
from gateway.writegate import Pacer, WriteGate

log = logging.getLogger("smsmeter.gateway.dispatcher")


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


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    throttle_pause_s: float = 1.0
    receipt_park_s: float = 30.0
    record_interval_s: float = 0.02


class Recorder:
    """`run()` records until stopped and `busy()` says no send is under way any more."""

    def __init__(
        self,
        engine: AsyncEngine,
        config: RecorderConfig,
        stats: DispatchStats,
        *,
        clock: Callable[[], datetime],
        on_event: EventHandler,
        gate: WriteGate,
        stopping: asyncio.Event,
        busy: Callable[[], bool],
    ) -> None:
        self._engine = engine
        self._config = config
        self.stats = stats
        self._clock = clock
        self._on_event = on_event
        self._gate = gate
        self._busy = busy
        self._results: list[SendResult] = []
        self._finals: list[Final] = []
        self._receipts: list[tuple[Receipt, asyncio.Future[None] | None]] = []
        self._parked: dict[str, tuple[Receipt, float]] = {}
        self._wake = asyncio.Event()
        self._pacer = Pacer(config.record_interval_s)
        self._stopping = stopping  # set by the dispatcher: finish what is under way, then return

    # -- what comes in -------------------------------------------------------------------------------
    def on_receipt(self, receipt: Receipt) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._receipts.append((receipt, fut))
        self._wake.set()
        return fut

    def add_result(self, result: SendResult) -> None:
        self._results.append(result)
        self._wake.set()

    def add_final(self, final: Final) -> None:
        self._finals.append(final)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            if not (self._results or self._receipts or self._finals):
                if self._stopping.is_set() and not self._busy():
                    self._drop_parked(force=True)
                    return
                self._wake.clear()
                await self._wait(0.2 if self._parked else 1.0)
                if self._parked and not (self._results or self._receipts or self._finals):
                    self._drop_parked(force=False)
                    with contextlib.suppress(Exception):
                        await self._flush([], [], [])  # match parked receipts again
                continue
            if not self._stopping.is_set():
                await self._pacer.turn()  # busy: what arrives meanwhile joins this transaction
            results, self._results = self._results, []
            finals, self._finals = self._finals, []
            receipts, self._receipts = self._receipts, []
            try:
                await self._flush(results, finals, [r for r, _ in receipts])
            except Exception as exc:
                log.exception("recording a batch failed; it is retried")
                self._results[:0] = results
                self._finals[:0] = finals
                for _, fut in receipts:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)  # the SMSC redelivers the receipt
                await asyncio.sleep(1.0)
                continue
            for _, fut in receipts:
                if fut is not None and not fut.done():
                    fut.set_result(None)

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()

    def _drop_parked(self, *, force: bool) -> None:
        limit = time.monotonic() - self._config.receipt_park_s
        for message_id, (receipt, since) in list(self._parked.items()):
            if force or since < limit:
                del self._parked[message_id]
                self.stats.receipts_unknown += 1
                log.warning(
                    "receipt for unknown message id %s (%s) dropped after %.0f s",
                    message_id,
                    receipt.state.value,
                    self._config.receipt_park_s,
                )

    # -- one batch -----------------------------------------------------------------------------------
    async def _flush(self, results: Sequence[SendResult], finals: Sequence[Final], receipts: Sequence[Receipt]) -> None:
        now = self._clock()
        events: list[GatewayEvent] = []
        early: dict[str, Receipt] = {}
        unparked: dict[str, tuple[Receipt, float]] = {}
        if results and (receipts or self._parked):
            early, receipts, unparked = self._match_in_batch(results, receipts)
        try:
            await self._write_batch(results, finals, receipts, early, now, events)
        except BaseException:
            self._parked.update(unparked)
            raise
        self.stats.batches += 1
        if events:
            await publish(self._on_event, events)

    async def _write_batch(
        self,
        results: Sequence[SendResult],
        finals: Sequence[Final],
        receipts: Sequence[Receipt],
        early: dict[str, Receipt],
        now: datetime,
        events: list[GatewayEvent],
    ) -> None:
        all_receipts = [*receipts, *(r for r, _ in self._parked.values())]
        async with self._gate, self._engine.begin() as conn:
            wanted = {r.message_id for r in all_receipts}
            parts = await store.parts_by_message_id(conn, wanted) if all_receipts else {}
            touched = {r.command.id for r in results} | {f.command_id for f in finals}
            touched |= {p.command_id for p in parts.values()}
            await store.lock(conn, touched)
            if results:
                await self._record_results(conn, results, now, events, early)
                # receipts that came with their own submit results match the parts just written
                # (their commands are locked already: they are among the results)
                unmatched = wanted - parts.keys()
                if unmatched:
                    parts.update(await store.parts_by_message_id(conn, unmatched))
            if finals:
                await self._finish(conn, finals, now, events)
            if all_receipts:
                await self._record_receipts(conn, receipts, parts, now, events)

    async def _finish(self, conn: Any, finals: Sequence[Final], now: datetime, events: list[GatewayEvent]) -> None:
        settled = await store.finish(conn, finals, now)
        self.stats.finals += sum(1 for e in settled if isinstance(e, CommandSettled))
        events.extend(settled)

    def _match_in_batch(
        self, results: Sequence[SendResult], receipts: Sequence[Receipt]
    ) -> tuple[dict[str, Receipt], list[Receipt], dict[str, tuple[Receipt, float]]]:
        """Delivery receipts for parts accepted in this same batch (the SMSC sent the receipt with, or
        before, its submit_sm_resp): matched here, so each part is written once, already delivered, and
        its command moves once, 0:0 → 1:0, instead of a write per step. Returns {message id: receipt},
        the receipts left for the database lookup (`_record_receipts`) and the parked receipts taken
        (parked again if the batch fails). Only DELIVRD receipts of wholly accepted sends are taken;
        anything else goes the ordinary way."""
        accepted: dict[str, int] = {}
        for r in results:
            if r.error is None:
                for message_id in r.message_ids:
                    if message_id is not None:
                        accepted[message_id] = accepted.get(message_id, 0) + 1
        groups: dict[str, list[Receipt]] = {}
        rest: list[Receipt] = []
        for receipt in receipts:
            if accepted.get(receipt.message_id) == 1 and receipt.message_id not in self._parked:
                groups.setdefault(receipt.message_id, []).append(receipt)
            else:
                rest.append(receipt)
        early: dict[str, Receipt] = {}
        for message_id, copies in groups.items():
            if receipt_outcome(copies[-1].state.value) is ReceiptOutcome.DELIVERED:
                early[message_id] = copies[-1]  # the last copy decides, as in `_record_receipts`
                self.stats.receipts += 1
                self.stats.receipts_duplicate += len(copies) - 1
            else:
                rest.extend(copies)
        fresh = {r.message_id for r in rest}
        unparked: dict[str, tuple[Receipt, float]] = {}
        for message_id, (receipt, _since) in list(self._parked.items()):
            if (
                accepted.get(message_id) == 1
                and message_id not in fresh
                and receipt_outcome(receipt.state.value) is ReceiptOutcome.DELIVERED
            ):
                unparked[message_id] = self._parked.pop(message_id)
                early[message_id] = receipt
                self.stats.receipts += 1
        return early, rest, unparked

    # -- submit results ------------------------------------------------------------------------------
    async def _record_results(
        self,
        conn: Any,
        results: Sequence[SendResult],
        now: datetime,
        events: list[GatewayEvent],
        early: dict[str, Receipt],
    ) -> None:
        """Parts, attempts and the 0:1 step of `results`, and the 1:0 step of commands whose every part
        has its receipt in `early` (`_match_in_batch`), in the same statements."""
        accepted, rows, history, finals = self._classify(results, now)
        await store.record_parts(conn, _part_rows(results, now, early))
        deadline = now + timedelta(seconds=self._config.policy.ack_timeout_s)
        by_id: dict[int, SendResult] = {}
        for r in accepted:
            delivered = all(m is not None and m in early for m in r.message_ids)
            to_state = CommandState.DELIVERED if delivered else CommandState.ACCEPTED
            rows.append(Reschedule(r.command.id, r.attempt, deadline, 0, to_state))
            by_id[r.command.id] = r
        self.stats.accepted += len(accepted)
        left = await store.reschedule(conn, rows, now)
        for command_id, (was, state) in left.items():
            result = by_id.get(command_id)
            if result is None:
                continue
            history.extend(_accepted_history(result, was == CommandState.SENDING.value and state != was, now))
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
                self.stats.delivered += 1
        await store.add_history(conn, history)
        if finals:
            await self._finish(conn, finals, now, events)

    def _classify(
        self, results: Sequence[SendResult], now: datetime
    ) -> tuple[list[SendResult], list[Reschedule], list[dict[str, Any]], list[Final]]:
        """Split send results: accepted ones, and for the others the reschedule rows, history rows and
        finals their failure calls for (`gateway.states`)."""
        policy = self._config.policy
        accepted: list[SendResult] = []
        reschedule: list[Reschedule] = []
        history: list[dict[str, Any]] = []
        finals: list[Final] = []
        for r in results:
            c = r.command
            if r.error is None:
                accepted.append(r)
            elif isinstance(r.error, Throttled | NotConnected):
                d = after_throttle(now, self._config.throttle_pause_s)
                reschedule.append(Reschedule(c.id, c.attempts, d.retry_at, None))
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
                    self.stats.retries += 1
                    reschedule.append(Reschedule(c.id, r.attempt, d.retry_at, status))
                    history.append(history_row(c.id, c.state, c.state, now, Source.SMSC, d.detail))
        return accepted, reschedule, history, finals

    # -- receipts ------------------------------------------------------------------------------------
    async def _record_receipts(
        self,
        conn: Any,
        receipts: Sequence[Receipt],
        parts: dict[str, Any],
        now: datetime,
        events: list[GatewayEvent],
    ) -> None:
        by_id: dict[str, list[Receipt]] = {m: [] for m in self._parked}
        for receipt in receipts:
            by_id.setdefault(receipt.message_id, []).append(receipt)
        marks: list[PartMark] = []
        delivered_commands: set[int] = set()
        failed: dict[int, tuple[int, ReceiptOutcome, str]] = {}
        monotonic = time.monotonic()
        for message_id, fresh in by_id.items():
            parked = self._parked.get(message_id)
            # every fresh copy of a receipt already parked, and all but one fresh copy otherwise, are duplicates
            self.stats.receipts_duplicate += len(fresh) if parked is not None else max(0, len(fresh) - 1)
            part = parts.get(message_id)
            if part is None:
                if parked is None:
                    self._parked[message_id] = (fresh[-1], monotonic)
                    self.stats.receipts_parked += 1
                continue
            self._parked.pop(message_id, None)
            chosen = fresh[-1] if fresh else parked[0] if parked is not None else None
            if chosen is None:
                continue
            receipt = chosen
            self.stats.receipts += 1
            outcome = receipt_outcome(receipt.state.value)
            if outcome is ReceiptOutcome.PENDING:
                continue
            if part.state == CommandState.DELIVERED.value or (
                part.state != CommandState.ACCEPTED.value and outcome is not ReceiptOutcome.DELIVERED
            ):
                self.stats.receipts_duplicate += 1
                continue
            part_state = CommandState.DELIVERED.value if outcome is ReceiptOutcome.DELIVERED else outcome.value
            marks.append(PartMark(part.id, part_state, receipt.done_at or now, receipt.error_code))
            if outcome is ReceiptOutcome.DELIVERED:
                delivered_commands.add(part.command_id)
            else:
                failed[part.command_id] = (part.attempt, outcome, f"{receipt.state.value} err {receipt.error_code}")
        await store.mark_parts(conn, marks)
        if delivered_commands:
            self.stats.delivered += await store.move_delivered(conn, sorted(delivered_commands), now)
        if failed:
            await self._after_failed_receipts(conn, failed, now, events)

    async def _after_failed_receipts(
        self,
        conn: Any,
        failed: dict[int, tuple[int, ReceiptOutcome, str]],
        now: datetime,
        events: list[GatewayEvent],
    ) -> None:
        policy = self._config.policy
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
                self.stats.retries += 1
                retries.append((row.id, state, d.retry_at))
                history.append(history_row(row.id, state, state, now, Source.RECEIPT, f"{d.detail} ({text})"))
        await store.retry_later(conn, retries, now)
        await store.add_history(conn, history)
        if finals:
            await self._finish(conn, finals, now, events)


def _accepted_history(r: SendResult, moved: bool, now: datetime) -> list[dict[str, Any]]:
    """The history row of an accepted attempt: 0:0 → 0:1 when it `moved` the command, a same-state row for a
    resend (attempt > 1) that did not, none otherwise."""
    n = len(r.bodies)
    if moved:
        detail = f"attempt {r.attempt}: {n} part{'s' if n > 1 else ''} accepted, "
        detail += f"id {', '.join(m or '' for m in r.message_ids)}"
        return [history_row(r.command.id, CommandState.SENDING, CommandState.ACCEPTED, now, Source.SMSC, detail)]
    if r.attempt > 1:
        detail = f"attempt {r.attempt} accepted (same frame, counter {r.command.counter})"
        return [history_row(r.command.id, r.command.state, r.command.state, now, Source.SMSC, detail)]
    return []


def _part_rows(results: Sequence[SendResult], now: datetime, early: Mapping[str, Receipt]) -> list[dict[str, Any]]:
    """The command_parts rows of one attempt per result (none for a throttled one: not an attempt, its parts
    are sent again with the rest); a part whose receipt is in `early` is already 1:0."""
    part_rows: list[dict[str, Any]] = []
    for r in results:
        if r.error is not None and isinstance(r.error, Throttled | NotConnected):
            continue
        for seq, ((body, has_udh), message_id, status) in enumerate(
            zip(r.bodies, r.message_ids, r.statuses, strict=True), start=1
        ):
            receipt = early.get(message_id) if message_id is not None and r.error is None else None
            if receipt is not None:
                state, delivered_at = CommandState.DELIVERED.value, receipt.done_at or now
                smsc_status = receipt.error_code if receipt.error_code is not None else status
            else:
                state = CommandState.ACCEPTED.value if message_id is not None else "rejected"
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


__all__ = ["DispatchStats", "Recorder", "RecorderConfig"]
