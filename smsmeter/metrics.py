"""The service's Prometheus metrics, on a registry the application owns (never the library's global default).

Two kinds, so that several processes sharing one database export each fact exactly once:
- **process metrics** (`Metrics`): what this process itself does — SMS submits and their latency, receipts and
  inbound SMS it took, its SMPP bind state, drops and window use, webhooks it answered, notices it sent. Every
  process exports these; sum them across processes.
- **fleet metrics** (`FleetCollector`): facts read from the database at scrape time — commands by state, the age
  of the oldest command not yet final, handshake latencies (accepted, received, processed) from the state
  history, wrong SMS by reason, webhook events by outcome, notices by status. Only processes with the web role
  export them (one scrape target answers for the whole fleet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.errors import GatewayError, NotConnected, SmscRejected, SubmitTimeout, Throttled
from gateway.ports import InboundHandler, InboundSms, OutboundSms, Receipt, ReceiptHandler, Transport, TransportState
from gateway.states import FINAL_STATES
from store.schema.commands import command_history, commands, wrong_sms
from store.schema.notices import notices
from store.schema.payments import webhook_events

log = logging.getLogger("smsmeter.metrics")

SUBMIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HANDSHAKE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


class Metrics:
    """Process metrics; implements `telemetry.Observer` for the parts it is handed to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.submits = Counter(
            "smsmeter_sms_submits", "SMS parts handed to the channel, by outcome", ["outcome"], registry=r
        )
        self.submit_seconds = Histogram(
            "smsmeter_sms_submit_seconds",
            "Time from a submit to the channel's answer (submit_sm_resp)",
            buckets=SUBMIT_BUCKETS_S,
            registry=r,
        )
        self.receipts = Counter("smsmeter_receipts", "Delivery receipts received, by state", ["state"], registry=r)
        self.inbound = Counter("smsmeter_inbound_sms", "Mobile-originated SMS received", registry=r)
        self.webhooks = Counter(
            "smsmeter_webhooks",
            "Payment webhooks answered, by provider and outcome",
            ["provider", "outcome"],
            registry=r,
        )
        self.notices_sent = Counter(
            "smsmeter_notices_sent",
            "Notices sent to subscribers, by channel and outcome",
            ["channel", "outcome"],
            registry=r,
        )
        self.job_items = Counter(
            "smsmeter_job_items",
            "Items scheduled jobs committed (invoices, accounts swept, notices), by job",
            ["job"],
            registry=r,
        )
        self.jobs_running = Gauge(
            "smsmeter_job_running", "1 while a scheduled job's run is under way", ["job"], registry=r
        )
        self.transport_bound = Gauge(
            "smsmeter_transport_bound", "1 while this process's SMS channel is bound/connected, else 0", registry=r
        )
        self.transport_state = Gauge(
            "smsmeter_transport_state", "This process's SMS channel state (1 = current)", ["state"], registry=r
        )
        self.window_in_use = Gauge("smsmeter_sms_window_in_use", "Submits awaiting the channel's answer", registry=r)
        self.window_size = Gauge("smsmeter_sms_window_size", "Submits the channel may have outstanding", registry=r)
        self.smpp_binds = Gauge("smsmeter_smpp_binds", "Successful SMPP binds since start", registry=r)
        self.smpp_drops = Gauge("smsmeter_smpp_drops", "SMPP connections lost since start", registry=r)
        self._transport: Transport | None = None
        self._window_in_use = 0
        for state in TransportState:
            self.transport_state.labels(state.value)
        self.transport_bound.set_function(lambda: 1.0 if self._state() is TransportState.BOUND else 0.0)
        self.window_in_use.set_function(lambda: float(self._window_in_use))
        self.smpp_binds.set_function(lambda: float(self._stat("binds")))
        self.smpp_drops.set_function(lambda: float(self._stat("drops")))

    # -- telemetry.Observer ---------------------------------------------------------------------------------------
    def sms_submitted(self, outcome: str, seconds: float) -> None:
        self.submits.labels(outcome).inc()
        self.submit_seconds.observe(seconds)

    def receipt_received(self, state: str) -> None:
        self.receipts.labels(state).inc()

    def inbound_received(self) -> None:
        self.inbound.inc()

    def webhook_handled(self, provider: str, outcome: str) -> None:
        self.webhooks.labels(provider, outcome).inc()

    def notice_sent(self, channel: str, outcome: str) -> None:
        self.notices_sent.labels(channel, outcome).inc()

    def job_advanced(self, job: str, items: int) -> None:
        self.job_items.labels(job).inc(items)

    def job_running(self, job: str, running: bool) -> None:
        self.jobs_running.labels(job).set(1.0 if running else 0.0)

    # -- the channel ----------------------------------------------------------------------------------------------
    def watch_transport(self, transport: Transport | None, window: int) -> None:
        """Report this transport's state; `window` is how many submits it may have outstanding."""
        self._transport = transport
        self.window_size.set(window)

    def _state(self) -> TransportState:
        return self._transport.state if self._transport is not None else TransportState.STOPPED

    def _stat(self, name: str) -> int:
        stats = getattr(self._transport, "stats", None)
        value = getattr(stats, name, 0)
        return value if isinstance(value, int) else 0

    def refresh(self) -> None:
        current = self._state()
        for state in TransportState:
            self.transport_state.labels(state.value).set(1.0 if state is current else 0.0)

    def metered(self, transport: Transport) -> Transport:
        """`transport`, with every submit timed and counted."""
        return MeteredTransport(transport, self)

    def receipt_handler(self, handler: ReceiptHandler) -> ReceiptHandler:
        # hands back the handler's own awaitable (a future, for the dispatcher): the transport then
        # needs no task per receipt
        def counted(receipt: Receipt) -> Awaitable[None]:
            self.receipt_received(receipt.state.value)
            return handler(receipt)

        return counted

    def inbound_handler(self, handler: InboundHandler) -> InboundHandler:
        def counted(sms: InboundSms) -> Awaitable[None]:
            self.inbound_received()
            return handler(sms)

        return counted


def submit_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "accepted"
    if isinstance(exc, Throttled):
        return "throttled"
    if isinstance(exc, SmscRejected):
        return "rejected"
    if isinstance(exc, SubmitTimeout):
        return "timeout"
    if isinstance(exc, NotConnected):
        return "not_connected"
    return "error"


class MeteredTransport:
    """A Transport that times and counts each submit of the transport it wraps, and tracks the window in use."""

    def __init__(self, inner: Transport, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    @property
    def state(self) -> TransportState:
        return self.inner.state

    @property
    def stats(self) -> object:
        return getattr(self.inner, "stats", None)

    async def submit(self, sms: OutboundSms) -> str:
        metrics = self._metrics
        started = time.perf_counter()
        metrics._window_in_use += 1
        try:
            message_id = await self.inner.submit(sms)
        except GatewayError as exc:
            metrics.sms_submitted(submit_outcome(exc), time.perf_counter() - started)
            raise
        finally:
            metrics._window_in_use -= 1
        metrics.sms_submitted("accepted", time.perf_counter() - started)
        return message_id

    def __getattr__(self, name: str) -> object:  # wait_bound(), config, ... of the wrapped transport
        return getattr(self.inner, name)

    async def __aenter__(self) -> MeteredTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)


# -- fleet metrics, read from the database -----------------------------------------------------------------------

_HANDSHAKE_STEPS = {
    # to_state: (metric name, help)
    "0:1": (
        "smsmeter_command_accept_seconds",
        "Time from a command's creation (0:0) to its acceptance by the SMSC (0:1)",
    ),
    "1:0": ("smsmeter_command_receipt_seconds", "Time from acceptance (0:1) to the delivery receipt (1:0)"),
    "1:1": ("smsmeter_command_ack_seconds", "Time from the previous step to the meter's acknowledgement (1:1)"),
}


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.count += 1
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative = [(str(float(b)), c) for b, c in zip(self.buckets, self.counts, strict=True)]
        cumulative.append(("+Inf", self.count))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.total)


@dataclass
class FleetSnapshot:
    commands_by_state: dict[str, int] = field(default_factory=dict)
    oldest_open_age_s: float = 0.0
    open_commands: int = 0
    wrong_sms_by_reason: dict[str, int] = field(default_factory=dict)
    webhook_events: dict[tuple[str, str], int] = field(default_factory=dict)
    notices: dict[tuple[str, str], int] = field(default_factory=dict)
    scrape_ok: bool = False


class FleetCollector(Collector):
    """Fleet metrics from the database. `await refresh(...)` before each scrape; `collect` serves the snapshot."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._clock = clock
        self._snapshot = FleetSnapshot()
        self._history_cursor: int | None = None  # handshake latencies count from the first scrape on
        self._handshake = {state: _Histogram(HANDSHAKE_BUCKETS_S) for state in _HANDSHAKE_STEPS}
        self._lock = asyncio.Lock()

    async def refresh(self, timeout_s: float = 5.0) -> None:
        async with self._lock:
            try:
                async with asyncio.timeout(timeout_s), self._engine.connect() as conn:
                    snapshot = await self._read(conn)
                    await self._read_handshakes(conn)
            except Exception as exc:  # a scrape must answer even when the database does not
                log.warning("fleet metrics not read: %s", type(exc).__name__)
                self._snapshot.scrape_ok = False
                return
            self._snapshot = snapshot

    async def _read(self, conn: AsyncConnection) -> FleetSnapshot:
        snap = FleetSnapshot(scrape_ok=True)
        rows = await conn.execute(select(commands.c.state, func.count()).group_by(commands.c.state))
        snap.commands_by_state = {state: n for state, n in rows.all()}
        open_filter = commands.c.state.not_in(sorted(str(state) for state in FINAL_STATES))
        oldest, n_open = (
            await conn.execute(select(func.min(commands.c.created_at), func.count()).where(open_filter))
        ).one()
        snap.open_commands = n_open
        if oldest is not None:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)
            snap.oldest_open_age_s = max(0.0, (self._clock() - oldest).total_seconds())
        rows = await conn.execute(select(wrong_sms.c.reason, func.count()).group_by(wrong_sms.c.reason))
        snap.wrong_sms_by_reason = {reason: n for reason, n in rows.all()}
        rows = await conn.execute(
            select(webhook_events.c.provider, webhook_events.c.outcome, func.count()).group_by(
                webhook_events.c.provider, webhook_events.c.outcome
            )
        )
        snap.webhook_events = {(p, o): n for p, o, n in rows.all()}
        rows = await conn.execute(
            select(notices.c.channel, notices.c.status, func.count()).group_by(notices.c.channel, notices.c.status)
        )
        snap.notices = {(c, s): n for c, s, n in rows.all()}
        return snap

    async def _read_handshakes(self, conn: AsyncConnection, batch: int = 20000) -> None:
        if self._history_cursor is None:
            last = (await conn.execute(select(func.max(command_history.c.id)))).scalar()
            self._history_cursor = int(last or 0)
            return
        step = command_history.alias("step")
        before = command_history.alias("before")
        query = (
            select(step.c.id, step.c.to_state, step.c.at, func.max(before.c.at))
            .join(
                before,
                (before.c.command_id == step.c.command_id)
                & (before.c.to_state == step.c.from_state)
                & (before.c.id < step.c.id),
            )
            .where(step.c.id > self._history_cursor, step.c.to_state.in_(list(_HANDSHAKE_STEPS)))
            .group_by(step.c.id, step.c.to_state, step.c.at)
            .order_by(step.c.id)
            .limit(batch)
        )
        rows = (await conn.execute(query)).all()
        for _id, to_state, at, previous_at in rows:
            if at is not None and previous_at is not None:
                self._handshake[to_state].observe(max(0.0, (_as_utc(at) - _as_utc(previous_at)).total_seconds()))
        # Move past every history row read so far, also the ones that were not a handshake step.
        if len(rows) == batch:
            self._history_cursor = rows[-1][0]
        else:
            last = (await conn.execute(select(func.max(command_history.c.id)))).scalar()
            self._history_cursor = max(self._history_cursor, int(last or 0))

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        up = GaugeMetricFamily("smsmeter_fleet_scrape_ok", "1 when the last read of the fleet metrics succeeded")
        up.add_metric([], 1.0 if snap.scrape_ok else 0.0)
        yield up
        by_state = GaugeMetricFamily("smsmeter_commands", "Commands by handshake state", labels=["state"])
        for state, n in sorted(snap.commands_by_state.items()):
            by_state.add_metric([state], n)
        yield by_state
        oldest = GaugeMetricFamily(
            "smsmeter_oldest_open_command_age_seconds", "Age of the oldest command not yet in a final state (0: none)"
        )
        oldest.add_metric([], snap.oldest_open_age_s)
        yield oldest
        open_ = GaugeMetricFamily("smsmeter_open_commands", "Commands not yet in a final state")
        open_.add_metric([], snap.open_commands)
        yield open_
        wrong = CounterMetricFamily(
            "smsmeter_wrong_sms", "SMS refused as not from a meter of ours, by reason", labels=["reason"]
        )
        for reason, n in sorted(snap.wrong_sms_by_reason.items()):
            wrong.add_metric([reason], n)
        yield wrong
        hooks = CounterMetricFamily(
            "smsmeter_webhook_events", "Payment webhook events recorded, by outcome", labels=["provider", "outcome"]
        )
        for (provider, outcome), n in sorted(snap.webhook_events.items()):
            hooks.add_metric([provider, outcome], n)
        yield hooks
        notice = GaugeMetricFamily("smsmeter_notices", "Notices by channel and status", labels=["channel", "status"])
        for (channel, status), n in sorted(snap.notices.items()):
            notice.add_metric([channel, status], n)
        yield notice
        for state, (name, documentation) in _HANDSHAKE_STEPS.items():
            yield self._handshake[state].family(name, documentation)

    def describe(self) -> Iterable[Metric]:
        return []


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MetricsExporter:
    """What /metrics serves: the process metrics, plus the fleet metrics while a collector is attached."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.fleet: FleetCollector | None = None

    def attach(self, fleet: FleetCollector) -> None:
        self.detach()
        self.metrics.registry.register(fleet)
        self.fleet = fleet

    def detach(self) -> None:
        if self.fleet is not None:
            self.metrics.registry.unregister(self.fleet)
            self.fleet = None

    async def __call__(self) -> tuple[bytes, str]:
        if self.fleet is not None:
            await self.fleet.refresh()
        self.metrics.refresh()
        return generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST
