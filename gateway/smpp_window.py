"""The submit window of the SMPP transport: parts wait in one queue for room in the window (`window`
submit_sm outstanding), paced to `rate_per_s` and backed off after ESME_RTHROTTLED / ESME_RMSGQFUL; a
submit_sm_resp frees its slot and the next queued part is written from the same callback (no task or
semaphore wake-up in between, so the window stays full while the event loop is busy with other work).
A submit only succeeds on its submit_sm_resp. A submit_sm_resp that comes after the submit timeout (the SMSC
or this event loop was slow) is not dropped: the SMSC did take that part, and its delivery receipt will name
the id, so the id goes to the `late` future of the part's `SubmitTimeout` (kept for `late_response_s`, at most
`_LATE_MAX` a connection). Used by `gateway.smpp`, which sets `conn` while bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from smpplib import consts as smpp_consts

from gateway.errors import NotConnected, SmscRejected, SubmitTimeout, Throttled
from gateway.pdu_smpp import ESM_UDHI, ESME_ROK, THROTTLE_STATUSES, encode_submit_sm, relative_validity
from gateway.ports import OutboundSms, check_part
from gateway.smpp_link import LateSubmit, Link, LinkLost, PendingSubmit, SmppConfig, SmppStats
from gateway.smpp_receipts import normalise_message_id

log = logging.getLogger("smsmeter.gateway.smpp")

_WRITE_HIGH_WATER = 256 * 1024
_LATE_MAX = 10_000  # timed-out submits a connection still waits a response for


class SubmitWindow:
    """Queued and outstanding submits of one transport, across its connections."""

    def __init__(self, config: SmppConfig, stats: SmppStats) -> None:
        self.config = config
        self.stats = stats
        self.conn: Link | None = None  # the bound connection, if any
        self._queue: collections.deque[PendingSubmit] = collections.deque()  # parts waiting for room
        self._pump_timer: asyncio.TimerHandle | None = None
        self._stalled_since: float | None = None
        self._next_send_at = 0.0
        self._throttled_until = 0.0
        self._throttle_level = 0

    def on_response(self, conn: Link, sequence: int, status: int, message_id: str) -> bool:
        """A submit_sm_resp (or a generic_nack) for `sequence`: settle its part; False if none waits for it."""
        entry = conn.pending.pop(sequence, None)
        known = entry is not None and not entry.fut.done()
        if known:
            assert entry is not None
            self._settle(entry, status, message_id)
        elif entry is None and (late := conn.late.pop(sequence, None)) is not None:
            known = True
            self._settle_late(late, sequence, status, message_id)
        if self._queue:
            self._pump()  # the freed slot goes to the next part at once, in this same turn of the loop
        return known

    def submit(self, sms: OutboundSms, state: str) -> asyncio.Future[str]:
        """Send one SMS part; the future gives the SMSC's message id (normalised) once it is accepted.

        Raises (or the future fails with) NotConnected (not bound, or the connection dropped while
        waiting: resend), SubmitTimeout (no room in the window, or no submit_sm_resp, within
        submit_timeout_s), Throttled (resend later), SmscRejected(status), InvalidPart (does not fit one SMS).

        Parts wait in one queue for room in the window; a submit_sm_resp frees its slot and the next part
        is written from the same callback (no task or semaphore wake-up in between, so the window stays
        full while the event loop is busy with other work).
        """
        check_part(sms)
        conn = self.conn
        if conn is None or not conn.alive:
            raise NotConnected(state)
        loop = asyncio.get_running_loop()
        entry = PendingSubmit(sms, loop.create_future())
        self._queue.append(entry)
        if len(conn.pending) < self.config.window:
            self._pump()
        if entry.sequence is None and not entry.fut.done():
            entry.timer = loop.call_later(self.config.submit_timeout_s, self._queue_timeout, entry)
        return entry.fut

    def _pump(self) -> None:
        """Write queued parts while the window has room (and pacing allows)."""
        conn = self.conn
        queue = self._queue
        if conn is None or not conn.alive:
            return
        cfg = self.config
        loop = asyncio.get_running_loop()
        while queue and len(conn.pending) < cfg.window:
            entry = queue[0]
            if entry.fut.done():  # its caller gave up (cancelled)
                queue.popleft()
                if entry.timer is not None:
                    entry.timer.cancel()
                continue
            if cfg.rate_per_s is not None or self._throttle_level:
                now = loop.time()
                at = max(now, self._next_send_at, self._throttled_until)
                if at > now:
                    self._pump_at(at)
                    return
                self._next_send_at = at + (1.0 / cfg.rate_per_s if cfg.rate_per_s else 0.0)
            if conn.write_backlog() > _WRITE_HIGH_WATER:  # the SMSC does not read: wait, then give up on it
                now = loop.time()
                if self._stalled_since is None:
                    self._stalled_since = now
                elif now - self._stalled_since > cfg.write_timeout_s:
                    log.warning("SMPP writes stalled for %s s; dropping the connection", cfg.write_timeout_s)
                    conn.fail("write stalled")
                    return
                self._pump_at(now + 0.05)
                return
            self._stalled_since = None
            queue.popleft()
            if entry.timer is not None:
                entry.timer.cancel()
            self._write_submit(conn, entry, loop)

    def _pump_at(self, at: float) -> None:
        if self._pump_timer is None:
            self._pump_timer = asyncio.get_running_loop().call_at(at, self._pump_from_timer)

    def _pump_from_timer(self) -> None:
        self._pump_timer = None
        self._pump()

    def _write_submit(self, conn: Link, entry: PendingSubmit, loop: asyncio.AbstractEventLoop) -> None:
        cfg = self.config
        sms = entry.sms
        sequence = conn.counter.next_sequence()
        try:
            pdu = encode_submit_sm(
                sequence,
                service_type=cfg.service_type,
                source_ton=cfg.source_ton,
                source_npi=cfg.source_npi,
                source_addr=cfg.source_addr,
                dest_ton=cfg.dest_ton,
                dest_npi=cfg.dest_npi,
                destination_addr=sms.destination,
                esm_class=ESM_UDHI if sms.has_udh else 0x00,
                protocol_id=sms.protocol_id,
                validity_period=relative_validity(sms.validity_s) if sms.validity_s else "",
                registered_delivery=cfg.registered_delivery,
                data_coding=sms.data_coding,
                short_message=sms.body,
            )
            conn.send_bytes(pdu)
        except LinkLost as exc:
            entry.fail(NotConnected(exc.reason))
            return
        except Exception as exc:  # a part smpplib cannot code: the caller's error, not the connection's
            entry.fail(exc)
            return
        entry.sequence = sequence
        conn.pending[sequence] = entry
        entry.timer = loop.call_later(cfg.submit_timeout_s, self._response_timeout, conn, sequence)

    def _queue_timeout(self, entry: PendingSubmit) -> None:
        if entry.sequence is None and not entry.fut.done():
            with contextlib.suppress(ValueError):
                self._queue.remove(entry)
            entry.fut.set_exception(SubmitTimeout(self.config.submit_timeout_s))

    def _response_timeout(self, conn: Link, sequence: int) -> None:
        entry = conn.pending.pop(sequence, None)
        if entry is not None and not entry.fut.done():
            entry.fut.set_exception(SubmitTimeout(self.config.submit_timeout_s, self._wait_late(conn, sequence)))
        if self._queue:
            self._pump()

    def _wait_late(self, conn: Link, sequence: int) -> asyncio.Future[str]:
        """Keep waiting for the response of a timed-out submit (bounded in time and number)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = conn.late
        while late:
            oldest = next(iter(late))
            if len(late) < _LATE_MAX and now - late[oldest].since <= self.config.late_response_s:
                break
            late.pop(oldest).fut.cancel()
        fut: asyncio.Future[str] = loop.create_future()
        late[sequence] = LateSubmit(fut, now)
        return fut

    def _settle_late(self, late: LateSubmit, sequence: int, status: int, message_id: str) -> None:
        """The response of a timed-out submit: its message id is handed on (a refusal changes nothing: the part
        was counted as not sent and is sent again)."""
        if late.fut.done():
            return
        if status != ESME_ROK:
            late.fut.cancel()
            return
        normalised = normalise_message_id(message_id, self.config.resp_id_format)
        self.stats.late_responses += 1
        log.info(
            "submit_sm_resp for sequence %d came %.1f s after the submit timeout; message id %s kept",
            sequence,
            asyncio.get_running_loop().time() - late.since,
            normalised,
        )
        late.fut.set_result(normalised)

    def fail_queue(self, reason: str) -> None:
        queue, self._queue = self._queue, collections.deque()
        for entry in queue:
            entry.fail(NotConnected(reason))
        if self._pump_timer is not None:
            self._pump_timer.cancel()
            self._pump_timer = None

    def _settle(self, entry: PendingSubmit, status: int, message_id: str) -> None:
        """A submit_sm_resp (or generic_nack) for `entry`: its future gets the id or the typed error."""
        if entry.timer is not None:
            entry.timer.cancel()
        fut = entry.fut
        if status == ESME_ROK:
            self._throttle_level = 0
            try:
                normalised = normalise_message_id(message_id, self.config.resp_id_format)
            except Exception as exc:
                fut.set_exception(exc)
                return
            self.stats.submitted += 1
            fut.set_result(normalised)
            return
        name = smpp_consts.DESCRIPTIONS.get(status, "")
        if status in THROTTLE_STATUSES:
            self._throttled()
            fut.set_exception(Throttled(status, name))
            return
        self.stats.rejected += 1
        fut.set_exception(SmscRejected(status, name))

    def _throttled(self) -> None:
        cfg = self.config
        self.stats.throttled += 1
        self._throttle_level += 1
        backoff = min(cfg.throttle_backoff_s * 2 ** (self._throttle_level - 1), cfg.throttle_backoff_max_s)
        self._throttled_until = max(self._throttled_until, asyncio.get_running_loop().time() + backoff)
