"""The gateway's running parts, built from the settings: transport, dispatcher, inbound path, and — for
the simulated network — the fleet of reference meters that answers.

`running_gateway` owns them: it loads the simulated fleet, enters the transport (connect, bind), runs
the dispatcher and the inbound recorder as tasks (on PostgreSQL, with a listener that wakes the
dispatcher when another process enqueues commands), and on exit stops claiming, lets the sends under way
finish and be recorded, closes the transport and waits for every task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from config.settings import TransportKind
from gateway.dispatcher import DispatchConfig, Dispatcher, default_worker_id
from gateway.events import EventHandler
from gateway.fleet import Fleet, fleet_responder, load_fleet, load_meter, report_readings
from gateway.inbound import Inbound
from gateway.keys import KeyRing
from gateway.outbox import COMMANDS_CHANNEL
from gateway.ports import InboundHandler, ReceiptHandler, Transport
from gateway.simulator import SimulatorTransport
from gateway.states import RetryPolicy
from gateway.writegate import WriteGate
from smsmeter.metrics import Metrics
from store.wakeup import wake_on_notify

log = logging.getLogger("smsmeter")

STOP_TIMEOUT_S = 10.0


@dataclass
class GatewayRuntime:
    transport: Transport
    dispatcher: Dispatcher
    inbound: Inbound
    fleet: Fleet | None  # the simulated meters, with the simulator transport
    simulator: SimulatorTransport | None = None  # the simulated network itself (its SMS outbox)


def dispatch_config(settings: Settings) -> DispatchConfig:
    g = settings.gateway
    return DispatchConfig(
        policy=RetryPolicy(max_attempts=g.max_attempts, retry_base_s=g.retry_base_s, ack_timeout_s=g.ack_timeout_s),
        worker_id=default_worker_id(),
        claim_batch=g.claim_batch,
        lease_s=g.lease_s,
        validity_s=g.validity_s or None,
    )


def build_transport(
    settings: Settings,
    on_receipt: ReceiptHandler,
    on_inbound: InboundHandler,
    fleet: Fleet | None = None,
    refresh_fleet: object = None,
) -> Transport:
    """The transport `settings.transport` names. The simulated one answers with `fleet`."""
    if settings.transport is TransportKind.SMPP:
        from gateway.smpp import SmppConfig, SmppTransport

        s = settings.smpp
        return SmppTransport(
            SmppConfig(
                host=s.host,
                port=s.port,
                system_id=s.system_id,
                password=s.password.reveal() if s.password is not None else "",
                source_addr=settings.short_number,
                system_type=s.system_type,
                source_ton=s.source_ton,
                source_npi=s.source_npi,
                dest_ton=s.dest_ton,
                dest_npi=s.dest_npi,
                window=s.window,
                rate_per_s=s.rate_per_s or None,
                enquire_link_interval_s=s.enquire_link_s,
                submit_timeout_s=s.response_timeout_s,
                reconnect_max_s=s.reconnect_max_s,
            ),
            on_receipt,
            on_inbound,
        )
    if settings.transport is TransportKind.MODEM:
        from gateway.modem import ModemConfig, ModemTransport

        m = settings.modem
        pin = m.pin.reveal() if m.pin is not None else None
        return ModemTransport(ModemConfig(port=m.port, baudrate=m.baudrate, pin=pin), on_receipt, on_inbound)
    from gateway.simulator import SimulatorConfig, SimulatorTransport

    sim = settings.simulator
    return SimulatorTransport(
        SimulatorConfig(
            short_number=settings.short_number, receipt_delay_s=sim.receipt_delay_s, loss_rate=sim.loss_rate
        ),
        on_receipt,
        on_inbound,
        rng=random.Random(sim.seed),
        responder=fleet_responder(
            fleet or Fleet(),
            reply_delay_s=sim.ack_delay_s,
            refresh=refresh_fleet if callable(refresh_fleet) else None,
        ),
    )


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, engine: AsyncEngine, keys: KeyRing, on_event: EventHandler, metrics: Metrics | None = None
) -> AsyncIterator[GatewayRuntime]:
    gate = WriteGate.for_engine(engine)
    dispatcher = Dispatcher(engine, None, config=dispatch_config(settings), on_event=on_event, gate=gate)
    inbound = Inbound(engine, keys, settings.short_number, on_event=on_event, gate=gate)
    fleet: Fleet | None = None
    refresh = None
    report_interval_s = round(settings.simulator.report_interval_s)
    if settings.transport is TransportKind.SIMULATOR:
        fleet = Fleet(capacity=settings.simulator.fleet_capacity)

        async def refresh(number: str) -> None:
            assert fleet is not None
            async with engine.connect() as conn:
                await load_meter(conn, keys, fleet, number, report_interval_s=report_interval_s)

        async with engine.connect() as conn:
            await load_fleet(conn, keys, fleet, report_interval_s=report_interval_s)
        log.info("simulated network: %d reference meters answer (more are loaded when reached)", len(fleet))
    on_receipt: ReceiptHandler = dispatcher.on_receipt
    on_sms: InboundHandler = inbound.on_sms
    if metrics is not None:
        on_receipt, on_sms = metrics.receipt_handler(on_receipt), metrics.inbound_handler(on_sms)
    transport = build_transport(settings, on_receipt, on_sms, fleet, refresh)
    simulator = transport if isinstance(transport, SimulatorTransport) else None
    if metrics is not None:  # every submit timed and counted; the window is the SMPP one (0: not applicable)
        transport = metrics.metered(transport)
        metrics.watch_transport(transport, settings.smpp.window if settings.transport is TransportKind.SMPP else 0)
    dispatcher.transport = transport
    async with transport:
        tasks = [
            asyncio.create_task(dispatcher.run(), name="gateway-dispatcher"),
            asyncio.create_task(inbound.run(), name="gateway-inbound"),
        ]
        if simulator is not None and fleet is not None and report_interval_s > 0:
            sim = simulator  # the simulated meters report readings on their own while the service runs
            tasks.append(
                asyncio.create_task(
                    report_readings(
                        fleet, lambda r: sim.receive_from(r.source, r.body, r.has_udh), every_s=report_interval_s
                    ),
                    name="gateway-fleet-reports",
                )
            )
        listener = None
        notified = wake_on_notify(engine, COMMANDS_CHANNEL, dispatcher.wake)  # commands of other processes
        if notified is not None:
            listener = asyncio.create_task(notified, name="gateway-listen")
        try:
            yield GatewayRuntime(transport, dispatcher, inbound, fleet, simulator)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            dispatcher.stop()
            inbound.stop()
            for task in tasks[2:]:  # the fleet's reports: a loop without an end of its own
                task.cancel()
            done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("gateway task %s failed", task.get_name(), exc_info=task.exception())
