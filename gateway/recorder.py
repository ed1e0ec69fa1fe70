"""The recorder: writes what came back from the transport — submit results, delivery receipts and the
final states the claim loop decided — in batches, one transaction each.

What arrives together goes to the database together (a few statements per batch, not per command,
`gateway.command_store`). States move as `gateway.states` decides, every transition with its history row,
only ever forward. A receipt that arrives in the same batch as its submit result is matched in memory:
the part is written once, already delivered, and the command moves 0:0 → 1:0 in one UPDATE with both
history rows (`_match_in_batch`).

Receipts are matched to parts by the SMSC message id. A receipt that arrives before its submit_sm_resp
has been recorded (SMSCs do that) is parked and matched again after each batch; it is logged as unknown
only after `receipt_park_s` and once every attempt sent before it was parked has been recorded. A submit_sm_resp
that came after the submit timeout (the attempt was recorded as not accepted and planned again) arrives as a
send result with `late_seqs`: its message id is written onto that attempt's part, so the part's receipt
matches, and the command moves to 0:1 (forward only) once every part of the attempt has an id.

Faults. A batch the database refuses while it answers is recorded in halves down to single items; one that
still fails alone becomes a `recording_failed` alarm and never holds up the batches behind it. While the
database does not answer, the batch is kept, its receipts waiting with it (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import command_store as store
from gateway.command_store import Final, PartMark, SendResult
from gateway.errors import Stopped
from gateway.events import CommandSettled, EventHandler, GatewayEvent, publish
from gateway.ports import Receipt
from gateway.record_batch import Batch
from gateway.record_steps import DispatchStats, RecorderConfig, after_failed_receipts, record_results
from gateway.states import (
    CommandState,
    ReceiptOutcome,
    receipt_outcome,
)
from gateway.writegate import Pacer, WriteGate

log = logging.getLogger("smsmeter.gateway.dispatcher")

_HELD_TAKEN_UP_MAX = 100_000  # held receipts a start takes up (the oldest first)


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
        self._parked: dict[str, tuple[Receipt, float, int]] = {}  # message id: receipt, since, ticket then
        # parked receipts are kept in `held_receipts` too: those not written there yet, and those to delete there
        self._unsaved: dict[str, Receipt] = {}
        self._forget: set[str] = set()
        self._unrecorded: dict[tuple[int, int], int] = {}  # (command, attempt) sent, not recorded: its ticket
        self._tickets = 0
        self._wake = asyncio.Event()
        self._pacer = Pacer(config.record_interval_s)
        self._stopping = stopping  # set by the dispatcher: finish what is under way, then return
        self._stopped = False  # run() has returned: nothing handed in from now on would be recorded
        self._answer_owed: set[asyncio.Future[None]] = set()  # receipts' futures handed out and not done yet

    # -- what comes in -------------------------------------------------------------------------------
    def on_receipt(self, receipt: Receipt) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._stopped:  # the SMSC gets a temporary error and delivers it again
            fut.set_exception(Stopped("recorder"))
            return fut
        self._answer_owed.add(fut)  # answered by the time run() returns, whatever path its batch took
        fut.add_done_callback(self._answer_owed.discard)
        self._receipts.append((receipt, fut))
        self._wake.set()
        return fut

    def sending(self, command_id: int, attempt: int) -> None:
        """An attempt's parts are going out: a receipt parked from now on may be for one of them."""
        self._tickets += 1
        self._unrecorded[(command_id, attempt)] = self._tickets

    def unrecorded(self) -> list[tuple[int, int]]:
        """The (command, attempt) sends under way or not recorded yet."""
        return list(self._unrecorded)

    def not_sent(self, command_id: int, attempt: int) -> None:
        """An attempt stopped before its result came back: nothing of it will be recorded here."""
        self._unrecorded.pop((command_id, attempt), None)

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
        self._stopped = False
        try:
            await self._load_held()
            await self._loop()
        finally:
            self._stopped = True
            self._refuse_waiting("recorder")

    def _refuse_waiting(self, what: str) -> None:
        """Stopped (or cancelled) with receipts handed in and not recorded: each gets a temporary error, so its
        SMSC delivers it again (to this gateway after its restart, or to another) instead of its deliver_sm
        waiting for an answer that would never come."""
        self._receipts = []
        for fut in list(self._answer_owed):  # queued, in a batch cut off, held: each gets its answer
            if not fut.done():
                fut.set_exception(Stopped(what))
        self._answer_owed.clear()

    async def _load_held(self) -> None:
        """Take up the receipts held in the database (by this gateway before a restart, or by another): each is
        matched as soon as its part is recorded, and dropped once it has been held `receipt_park_s`."""
        try:
            async with self._engine.connect() as conn:
                kept = await store.held_receipts_kept(conn, _HELD_TAKEN_UP_MAX)
        except Exception as exc:  # the database is away: they are taken up at the next start
            log.warning("reading the held receipts failed (%s)", type(exc).__name__)
            return
        wall, monotonic = self._clock(), time.monotonic()
        for receipt, held_at in kept:
            if receipt.message_id not in self._parked:
                age_s = max(0.0, (wall - held_at).total_seconds())
                self._parked[receipt.message_id] = (receipt, monotonic - age_s, 0)
        if kept:
            log.info("%d held receipts taken up, waiting for their parts", len(kept))

    async def _loop(self) -> None:
        while True:
            if not (self._results or self._receipts or self._finals):
                if self._stopping.is_set() and not self._busy():
                    self._stopped = True  # a receipt that comes while the parked ones are kept is refused
                    await self._keep_parked()
                    return
                self._wake.clear()
                await self._wait(0.2 if self._parked else 1.0)
                if (self._parked or self._unsaved or self._forget) and not (
                    self._results or self._receipts or self._finals
                ):
                    self._drop_parked()
                    with contextlib.suppress(Exception):
                        await self._flush([], [], [])  # match parked receipts again
                continue
            if not self._stopping.is_set():
                await self._pacer.turn()  # busy: what arrives meanwhile joins this transaction
            results, self._results = self._one_per_attempt(self._results)
            batch = Batch(results, self._finals, self._receipts)
            self._finals, self._receipts = [], []
            try:
                await self._flush(batch.results, batch.finals, batch.receipt_values())
            except asyncio.CancelledError:
                self._hold(batch)  # cancelled while stopping: its receipts are refused, and delivered again
                raise
            except Exception:
                log.exception("recording a batch of %d failed", batch.size)
                if await self._database_answers():
                    await self._record_apart(batch)
                else:
                    self._hold(batch)
                    await asyncio.sleep(1.0)
                continue
            self._recorded(batch)

    @staticmethod
    def _one_per_attempt(results: list[SendResult]) -> tuple[list[SendResult], list[SendResult]]:
        """The results for this batch and those left for the next: a late submit_sm_resp waits for the next
        batch when its attempt already has a result in this one, so each writes its rows in order."""
        seen: set[tuple[int, int]] = set()
        now: list[SendResult] = []
        later: list[SendResult] = []
        for r in results:
            key = (r.command.id, r.attempt)
            if r.late_seqs and key in seen:
                later.append(r)
                continue
            seen.add(key)
            now.append(r)
        return now, later

    def _recorded(self, batch: Batch) -> None:
        for r in batch.results:
            self._unrecorded.pop((r.command.id, r.attempt), None)
        for _, fut in batch.receipts:
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _hold(self, batch: Batch) -> None:
        """The database is away: keep the batch, in front of what came since, and record it when it is back.
        Receipts wait with it (their SMSC is answered once they are recorded, or with a temporary error by
        the transport's handler timeout, and redelivers them): none is refused that can still be matched."""
        self._results[:0] = batch.results
        self._finals[:0] = batch.finals
        self._receipts[:0] = batch.receipts

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(5.0), self._engine.connect() as conn:
                await conn.execute(select(literal(1)))
        except Exception:
            return False
        return True

    async def _record_apart(self, batch: Batch) -> None:
        """The database answers but refused the batch: record it in halves, down to single items, so that what
        can be recorded is, and whatever still fails alone becomes an alarm a person sees (`_give_up`) instead
        of holding up every batch behind it. Parked receipts are set aside meanwhile and matched after."""
        parked, self._parked = self._parked, {}
        try:
            pending = [batch]
            while pending:
                part = pending.pop()
                try:
                    await self._flush(part.results, part.finals, part.receipt_values())
                except Exception as exc:
                    if part.size == 1 and await self._database_answers():
                        await self._give_up(part, exc)
                    elif part.size == 1 or not await self._database_answers():
                        self._hold(Batch.joined([part, *pending]))
                        return
                    else:
                        pending.extend(reversed(part.halves()))
                    continue
                self._recorded(part)
        finally:
            parked.update(self._parked)
            self._parked = parked

    async def _give_up(self, item: Batch, exc: Exception) -> None:
        """One send result, final state or receipt the database refuses on its own: logged, and an alarm row
        for the operator (a send result's command is sent again, as a new attempt, once its lease runs out)."""
        now = self._clock()
        meter_id: int | None = None
        command_id: int | None = None
        if item.results:
            r = item.results[0]
            self._unrecorded.pop((r.command.id, r.attempt), None)
            meter_id, command_id = r.command.meter_id, r.command.id
            ids = ", ".join(m or "-" for m in r.message_ids)
            what = f"attempt {r.attempt} of command {r.command.id} (message ids {ids})"
        elif item.finals:
            f = item.finals[0]
            meter_id, command_id = f.meter_id, f.command_id
            what = f"final state {f.state.value} of command {f.command_id}"
        else:
            what = f"receipt for message id {item.receipts[0][0].message_id}"
        detail = f"recording the {what} failed: {type(exc).__name__}: {exc}"
        log.error("%s; an alarm is raised", detail)
        self.stats.recording_failed += 1
        for command in (command_id, None) if command_id is not None else (None,):
            try:
                async with self._gate, self._engine.begin() as conn:
                    await store.raise_alarm(conn, meter_id, command, "recording_failed", detail, now)
                break
            except Exception:  # e.g. the command itself is not there: the alarm names it in its detail
                continue
        for _, fut in item.receipts:  # nothing a redelivery would change
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()

    async def _keep_parked(self) -> None:
        """Stopping: the parked receipts stay in `held_receipts` (written there now if they were not yet) for the
        next start, or another gateway, to match."""
        if self._unsaved or self._forget:
            with contextlib.suppress(Exception):
                await self._flush([], [], [])
        if self._parked:
            log.info("%d receipts whose parts are not known yet are kept for the next start", len(self._parked))
        self._parked.clear()

    def _drop_parked(self) -> None:
        """Drop receipts parked longer than `receipt_park_s` that no send can match any more: every attempt
        sent before the receipt was parked has been recorded (or stopped). One whose submit is still being
        recorded waits, however long that takes (the database away, a large backlog)."""
        limit = time.monotonic() - self._config.receipt_park_s
        oldest_unrecorded = next(iter(self._unrecorded.values()), None)
        for message_id, (receipt, since, ticket) in list(self._parked.items()):
            if since < limit and (oldest_unrecorded is None or oldest_unrecorded > ticket):
                del self._parked[message_id]
                self._unsaved.pop(message_id, None)
                self._forget.add(message_id)
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
        unparked: dict[str, tuple[Receipt, float, int]] = {}
        if results and (receipts or self._parked):
            early, receipts, unparked = self._match_in_batch(results, receipts)
        try:
            await self._write_batch(results, finals, receipts, early, now, events)
        except BaseException:
            self._parked.update(unparked)
            self._forget -= unparked.keys()
            self._unsaved.update({m: r for m, (r, _since, _ticket) in unparked.items()})
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
        all_receipts = [*receipts, *(r for r, _since, _ticket in self._parked.values())]
        async with self._gate, self._engine.begin() as conn:
            wanted = {r.message_id for r in all_receipts}
            parts = await store.parts_by_message_id(conn, wanted) if all_receipts else {}
            touched = {r.command.id for r in results} | {f.command_id for f in finals}
            touched |= {p.command_id for p in parts.values()}
            await store.lock(conn, touched)
            if results:
                finals_now = await record_results(conn, results, now, early, self._config, self.stats)
                if finals_now:
                    await self._finish(conn, finals_now, now, events)
                # receipts that came with their own submit results match the parts just written
                # (their commands are locked already: they are among the results)
                unmatched = wanted - parts.keys()
                if unmatched:
                    parts.update(await store.parts_by_message_id(conn, unmatched))
            if finals:
                await self._finish(conn, finals, now, events)
            if all_receipts:
                await self._record_receipts(conn, receipts, parts, now, events)
            # the receipts parked from now on are in the database, those matched or dropped no longer
            unsaved, forget = dict(self._unsaved), set(self._forget)
            if forget:
                await store.release_receipts(conn, forget)
            if unsaved:
                await store.hold_receipts(conn, list(unsaved.values()), now)
        for message_id, receipt in unsaved.items():
            if self._unsaved.get(message_id) is receipt:
                del self._unsaved[message_id]
        self._forget -= forget

    async def _finish(self, conn: Any, finals: Sequence[Final], now: datetime, events: list[GatewayEvent]) -> None:
        settled = await store.finish(conn, finals, now)
        self.stats.finals += sum(1 for e in settled if isinstance(e, CommandSettled))
        events.extend(settled)

    def _match_in_batch(
        self, results: Sequence[SendResult], receipts: Sequence[Receipt]
    ) -> tuple[dict[str, Receipt], list[Receipt], dict[str, tuple[Receipt, float, int]]]:
        """Delivery receipts for parts accepted in this same batch (the SMSC sent the receipt with, or
        before, its submit_sm_resp): matched here, so each part is written once, already delivered, and
        its command moves once, 0:0 → 1:0, instead of a write per step. Returns {message id: receipt},
        the receipts left for the database lookup (`_record_receipts`) and the parked receipts taken
        (parked again if the batch fails). Only DELIVRD receipts of wholly accepted sends are taken;
        anything else goes the ordinary way."""
        accepted: dict[str, int] = {}
        for r in results:
            if r.error is None and not r.late_seqs:  # a late id's receipt is matched in the database
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
        unparked: dict[str, tuple[Receipt, float, int]] = {}
        for message_id, (receipt, _since, _ticket) in list(self._parked.items()):
            if (
                accepted.get(message_id) == 1
                and message_id not in fresh
                and receipt_outcome(receipt.state.value) is ReceiptOutcome.DELIVERED
            ):
                unparked[message_id] = self._parked.pop(message_id)
                self._unsaved.pop(message_id, None)
                self._forget.add(message_id)
                early[message_id] = receipt
                self.stats.receipts += 1
        return early, rest, unparked

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
                    self._parked[message_id] = (fresh[-1], monotonic, self._tickets)
                    self._unsaved[message_id] = fresh[-1]
                    self.stats.receipts_parked += 1
                continue
            if self._parked.pop(message_id, None) is not None:
                self._unsaved.pop(message_id, None)
                self._forget.add(message_id)
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
            decided = await after_failed_receipts(conn, failed, now, self._config.policy, self.stats)
            if decided:
                await self._finish(conn, decided, now, events)


__all__ = ["Recorder"]
