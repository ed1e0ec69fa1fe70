"""Building the running service from the settings: the one place that wires every part together.

`build_app` returns the aiohttp application; its cleanup context owns every long-lived resource (the
database engine, the transport, the background workers) and releases them in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.event_delivery import AiohttpPoster
from billing.notices import TextSender
from billing.rules.notices import SmsEncoding, sms_sizing
from billing.sms_text import TEXT_CODINGS, SentPart, SentText, TransportTextSender, gsm7_septets, read_sent_texts
from billing.sts_vending import SoftwareTokenGenerator
from billing.text_requests import TextRequests
from config import Settings
from gateway.errors import GatewayError
from gateway.events import GatewayEvent
from gateway.keys import KeyRing
from gateway.ports import Transport, TransportState
from gateway.simulator import SimulatorTransport
from gateway.watch import BindWatch
from smsmeter import __version__
from smsmeter.billing_setup import (
    BILLING,
    Job,
    build_billing,
    run_jobs,
    self_service_answerer,
    start_billing_jobs,
)
from smsmeter.masterkey import load_master_key
from smsmeter.metrics import FleetCollector, Metrics, MetricsExporter
from smsmeter.payments_wiring import running_payments
from smsmeter.wiring import GatewayRuntime, running_gateway
from store import migrate
from store.engine import backend, create_engine, probe
from store.uow import UnitOfWork
from telemetry import JobProgress, bind_ids
from web import health as web_health
from web import ops as web_ops
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.keys import Services
from web.radius import RadiusPasswordChecker
from web.webhooks import PaymentServices

log = logging.getLogger("smsmeter")

ENGINE = web.AppKey("engine", AsyncEngine)
UOW = web.AppKey("uow", UnitOfWork)
KEYS = web.AppKey("keys", KeyRing)
GATEWAY = web.AppKey("gateway", GatewayRuntime)
OTP_SEND_TIMEOUT_S = 15.0


def settle_heap() -> None:
    """Before serving: the heap built so far (modules, metadata, settings) is frozen out of the cyclic
    garbage collector's scans, and young collections run every 10,000 allocations instead of 700. The
    gateway allocates a few short-lived objects per SMS; with the defaults the collector took about a
    third of its CPU time at 2,000 commands/s (bench/gateway). `smsmeter serve` and the benches call it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class Role(enum.Enum):
    """What a process runs. Several processes with different roles share one PostgreSQL database."""

    WEB = "web"  # the REST API, console and portal, webhooks; exports the fleet metrics
    GATEWAY = "gateway"  # the transport and the dispatcher: claims commands, sends them, takes receipts and replies
    SCHEDULER = "scheduler"  # timers: retries and expiries, notices, reconciliation


ALL_ROLES = frozenset(Role)


@dataclass
class Runtime:
    """What the service holds while it runs; filled in by the cleanup context."""

    settings: Settings
    roles: frozenset[Role] = ALL_ROLES
    engine: AsyncEngine | None = None
    transport: Transport | None = None
    metrics: Metrics = field(default_factory=Metrics)


class _HealthCheck:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __call__(self) -> HealthReport:
        runtime = self._runtime
        database = ComponentHealth("down", "not started")
        if runtime.engine is not None:
            try:
                await probe(runtime.engine, 5)
                revision = await migrate.current_revision(runtime.engine)
                database = ComponentHealth("ok", f"{backend(runtime.engine)}, schema {revision}")
            except Exception as exc:  # any failure of the probe means the database is down
                database = ComponentHealth("down", type(exc).__name__)
        transport_state = runtime.transport.state.value if runtime.transport is not None else "stopped"
        transport = ComponentHealth(transport_state, runtime.settings.transport.value)
        return HealthReport(version=__version__, database=database, transport=transport)


class _Readiness:
    """Ready when the database answers and, in a process that runs the channel, the channel is bound."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __call__(self) -> list[web_ops.Check]:
        runtime = self._runtime
        checks = []
        if runtime.engine is None:
            checks.append(web_ops.Check("database", False, "not started"))
        else:
            try:
                await probe(runtime.engine, 2)
                checks.append(web_ops.Check("database", True, backend(runtime.engine)))
            except Exception as exc:  # any failure of the probe means not ready
                checks.append(web_ops.Check("database", False, type(exc).__name__))
        if Role.GATEWAY in runtime.roles:
            state = runtime.transport.state if runtime.transport is not None else TransportState.STOPPED
            kind = runtime.settings.transport.value
            checks.append(web_ops.Check("transport", state is TransportState.BOUND, f"{kind} {state.value}"))
        return checks


class OtpBySms:
    """The portal's one-time sign-in codes (`web.keys.OtpSender`) as text SMS from the short number,
    through billing's text sender on the gateway's transport — the way arrears notices go, but at once
    instead of queued: a code is worth something for a few minutes only, and is never stored in clear.

    A send the channel refuses is logged, not raised: the portal answers the same page whether an account
    exists or not, and the subscriber may ask again."""

    def __init__(self, sender: TextSender) -> None:
        self._sender = sender

    async def __call__(self, phone: str, text: str) -> None:
        try:
            async with asyncio.timeout(OTP_SEND_TIMEOUT_S):
                await self._sender.send_text(phone, text)
        except (GatewayError, TimeoutError) as exc:
            log.warning("sign-in code to %s not sent: %s", phone, exc)


class SimulatedHandset:
    """A phone of the simulated network texting the short number (`web.keys.Handset`): GSM-7 when the text
    fits the alphabet, else UCS-2, as a handset sends it."""

    def __init__(self, network: SimulatorTransport) -> None:
        self._network = network

    def __call__(self, phone: str, text: str) -> None:
        if sms_sizing(text).encoding is SmsEncoding.GSM7:
            body, coding = b"".join(gsm7_septets(text)), 0x00
        else:
            body, coding = text.encode("utf-16-be"), 0x08
        self._network.receive_from(phone.lstrip("+"), body, False, coding)


class SimulatorSmsOutbox:
    """The simulated network's SMS outbox (`web.keys.SmsOutbox`): the text SMS its SMSC took, joined into the
    texts the phones received."""

    def __init__(self, network: SimulatorTransport) -> None:
        self._smsc = network.simulator

    def __call__(self) -> list[SentText]:
        return read_sent_texts(
            SentPart(s.sms, s.accepted_at, s.lost) for s in self._smsc.texts if s.sms.data_coding in TEXT_CODINGS
        )


def _bind_watch(
    uow: UnitOfWork, gateway: GatewayRuntime, settings: Settings, on_event: Callable[[GatewayEvent], Awaitable[None]]
) -> Job:
    """The SMS channel's state watched: unbound for `gateway.bind_down_after_s`, an alarm row (told to billing,
    whose alarm rules notify people)."""
    bind = BindWatch(
        uow, lambda: gateway.transport.state, down_after=timedelta(seconds=settings.gateway.bind_down_after_s)
    )

    async def check(now: datetime, progress: JobProgress) -> None:
        event = await bind.check(now)
        if event is not None:
            await on_event(event)

    return check


def build_app(settings: Settings, roles: frozenset[Role] = ALL_ROLES) -> web.Application:
    runtime = Runtime(settings, roles)
    health_check = _HealthCheck(runtime)
    services = Services()
    payment_services = PaymentServices()
    if Role.WEB in roles:
        app = create_app(
            health_check=health_check,
            services=services,
            web_settings=settings.web,
            radius_settings=settings.radius,
            utility_name=settings.utility.name,
            currency=settings.utility.currency,
            payment_services=payment_services,
        )
        if settings.web.session_secret is None:
            log.warning(
                "web.session_secret is not set: a random one is used, so sessions end when the service restarts"
            )
    else:  # a worker process answers only the operations endpoints
        app = web.Application()
        app[web_health.HEALTH_CHECK] = health_check
        web_health.setup_routes(app)
    exporter = MetricsExporter(runtime.metrics)
    web_ops.setup_routes(app, readiness=_Readiness(runtime), export=exporter)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        _dump_tasks_on_signal()
        engine = create_engine(
            settings.database.url, pool_size=settings.database.pool_size, echo=settings.database.echo
        )
        try:
            await migrate.upgrade_one_at_a_time(engine)
            runtime.engine = engine
            if Role.WEB in roles:
                exporter.attach(FleetCollector(engine))
            app[ENGINE] = engine
            uow = app[UOW] = UnitOfWork(engine)
            services.uow = uow
            if settings.radius.enabled:
                services.radius = RadiusPasswordChecker(settings.radius)
            master_key = load_master_key(settings)
            keys = app[KEYS] = services.keys = KeyRing(master_key)
            services.sts = SoftwareTokenGenerator(master_key)
            billing = app[BILLING] = services.billing = build_billing(settings, uow, keys, runtime.metrics)
            poster = billing.poster = AiohttpPoster()  # outbound event webhooks; closed at shutdown

            async def on_gateway_event(event: GatewayEvent) -> None:
                """What the gateway learns goes to billing (the arrow points one way: gateway never
                imports billing)."""
                with bind_ids(command_id=getattr(event, "command_id", None), meter_id=getattr(event, "meter_id", None)):
                    await billing.on_gateway_event(event)

            gateway_part: AbstractAsyncContextManager[GatewayRuntime | None] = (
                running_gateway(settings, engine, keys, on_gateway_event, runtime.metrics)
                if Role.GATEWAY in roles
                else nullcontext(None)
            )
            async with (
                gateway_part as gateway,
                running_payments(
                    settings,
                    uow,
                    keys,
                    payment_services,
                    web_role=Role.WEB in roles,
                    scheduler_role=Role.SCHEDULER in roles,
                    wake_dispatcher=gateway.dispatcher.wake if gateway is not None else None,
                    observer=runtime.metrics,
                ),
            ):
                texts: TextRequests | None = None
                text_task: asyncio.Task[None] | None = None
                if gateway is not None:
                    app[GATEWAY] = gateway
                    runtime.transport = gateway.transport
                    billing.text_sender = TransportTextSender(gateway.transport, validity_s=settings.gateway.validity_s)
                    services.otp_sender = OtpBySms(billing.text_sender)
                    if gateway.simulator is not None:
                        services.sms_outbox = SimulatorSmsOutbox(gateway.simulator)
                        services.handset = SimulatedHandset(gateway.simulator)
                    # text SMS from subscribers' phones: kept by the gateway, answered in a task of their own
                    texts = TextRequests(
                        uow,
                        self_service_answerer(settings, billing, services.sts),
                        sender=billing.text_sender,
                        clock=lambda: datetime.now(UTC),
                    )
                    gateway.inbound.on_text = texts.on_texts
                    text_task = asyncio.create_task(texts.run(), name="self-service")
                elif Role.WEB in roles:
                    log.warning(
                        "portal sign-in codes by SMS are not sent by this process: it runs no gateway "
                        "(run the web and gateway roles together to offer them)"
                    )
                # the sweep and invoices run with the timers; text notices where the transport is
                billing_jobs = start_billing_jobs(
                    settings,
                    billing,
                    schedule=Role.SCHEDULER in roles,
                    notices=Role.GATEWAY in roles,
                    observer=runtime.metrics,
                )
                watch_jobs = run_jobs(
                    [("smsc watch", 15.0, _bind_watch(uow, gateway, settings, on_gateway_event))]
                    if gateway is not None
                    else [],
                    observer=runtime.metrics,
                )
                log.info(
                    "smsmeter %s ready (%s): database %s, transport %s (%s), short number %s",
                    __version__,
                    ",".join(sorted(r.value for r in roles)),
                    backend(engine),
                    settings.transport.value,
                    gateway.transport.state.value if gateway is not None else "not run by this process",
                    settings.short_number,
                )
                try:
                    yield
                finally:
                    log.info("smsmeter stopping: releasing the transport and the database")
                    services.otp_sender = None
                    services.sms_outbox = None
                    services.handset = None
                    if text_task is not None and texts is not None:
                        assert gateway is not None
                        texts.stop()  # what arrives from now on is kept for the next start
                        await asyncio.gather(text_task, return_exceptions=True)
                    await watch_jobs.stop()
                    await billing_jobs.stop()
                    await poster.close()
        finally:
            runtime.transport = None
            if isinstance(services.radius, RadiusPasswordChecker):
                await services.radius.close()
            services.uow = None
            services.billing = None
            runtime.engine = None
            exporter.detach()
            await engine.dispose()

    app.cleanup_ctx.append(resources)
    return app


def _dump_tasks_on_signal() -> None:
    """`kill -USR1 <pid>` logs every asyncio task and where it waits: what an operator needs when a stop hangs
    (docs/operations.md, "A stop that does not finish")."""

    def dump() -> None:
        tasks = asyncio.all_tasks()
        log.warning("SIGUSR1: %d tasks", len(tasks))
        for task in tasks:
            log.warning("task %s: %s", task.get_name(), " -> ".join(_awaiting(task.get_coro())) or "(running)")
        # an `async with` over an async generator (a cleanup context, a contextmanager) awaits the generator
        # through an object that does not name it: the generators that are waiting are listed on their own
        for generator in gc.get_objects():
            if inspect.isasyncgen(generator) and generator.ag_await is not None:
                log.warning("async generator %s: %s", generator.__qualname__, " -> ".join(_awaiting(generator)))

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no signals off the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


def _awaiting(coro: object) -> list[str]:
    """Where a suspended coroutine waits: its frame, then the frame of what it awaits, down the chain."""
    where: list[str] = []
    while coro is not None and len(where) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return where
