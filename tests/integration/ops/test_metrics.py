"""Metrics: the fleet view read from the database (both backends), the channel metered, the exposition parsed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import SmscRejected, Throttled
from gateway.ports import OutboundSms, TransportState
from smsmeter.metrics import FleetCollector, Metrics, MetricsExporter
from store.schema.commands import command_history, commands, wrong_sms
from store.schema.payments import webhook_events
from store.schema.registry import meters

T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def _command(conn, meter_id: int, counter: int, state: str, created_at: datetime) -> int:  # type: ignore[no-untyped-def]
    result = await conn.execute(
        insert(commands).values(
            meter_id=meter_id,
            kind="credit",
            counter=counter,
            key_id=1,
            frame=b"\x01",
            payload={},
            state=state,
            created_by="system:test",
            created_at=created_at,
            updated_at=created_at,
        )
    )
    return int(result.inserted_primary_key[0])


async def _step(conn, command_id: int, from_state: str | None, to_state: str, at: datetime) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(
        insert(command_history).values(
            command_id=command_id, from_state=from_state, to_state=to_state, at=at, source="test"
        )
    )


async def test_fleet_metrics_from_the_database(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        meter_id = (
            await conn.execute(
                insert(meters).values(code="88000000000000000017", msisdn="37369000001", installed_at=T0)
            )
        ).inserted_primary_key[0]
        done = await _command(conn, meter_id, 1, "1:1", T0)
        await _step(conn, done, None, "0:0", T0)
        stuck = await _command(conn, meter_id, 2, "0:1", T0 + timedelta(minutes=5))
        await _step(conn, stuck, None, "0:0", T0 + timedelta(minutes=5))
        await _command(conn, meter_id, 3, "failed", T0)
        await conn.execute(
            insert(wrong_sms),
            [
                {"received_at": T0, "source": "1", "destination": "7220", "body": b"x", "reason": "unknown_sender"},
                {"received_at": T0, "source": "1", "destination": "7220", "body": b"x", "reason": "unknown_sender"},
                {"received_at": T0, "source": "1", "destination": "7220", "body": b"x", "reason": "replay"},
            ],
        )
        await conn.execute(
            insert(webhook_events).values(
                provider="stripe",
                event_id="evt_1",
                event_type="checkout.session.completed",
                received_at=T0,
                outcome="applied",
            )
        )

    metrics = Metrics()
    exporter = MetricsExporter(metrics)
    exporter.attach(FleetCollector(engine, clock=lambda: T0 + timedelta(minutes=15)))
    first = _samples((await exporter())[0])
    assert first[("smsmeter_fleet_scrape_ok", ())] == 1
    assert first[("smsmeter_commands", (("state", "1:1"),))] == 1
    assert first[("smsmeter_commands", (("state", "0:1"),))] == 1
    assert first[("smsmeter_commands", (("state", "failed"),))] == 1
    assert first[("smsmeter_open_commands", ())] == 1
    assert first[("smsmeter_oldest_open_command_age_seconds", ())] == 600.0
    assert first[("smsmeter_wrong_sms_total", (("reason", "unknown_sender"),))] == 2
    assert first[("smsmeter_wrong_sms_total", (("reason", "replay"),))] == 1
    assert first[("smsmeter_webhook_events_total", (("outcome", "applied"), ("provider", "stripe")))] == 1
    assert first[("smsmeter_command_ack_seconds_count", ())] == 0  # latencies count from the first scrape on

    # The stuck command walks the handshake: each step's latency lands in its histogram.
    async with engine.begin() as conn:
        await _step(conn, stuck, "0:0", "0:1", T0 + timedelta(minutes=5, seconds=0.2))
        await _step(conn, stuck, "0:1", "1:0", T0 + timedelta(minutes=5, seconds=3.2))
        await _step(conn, stuck, "1:0", "1:1", T0 + timedelta(minutes=5, seconds=63.2))
        await conn.execute(commands.update().where(commands.c.id == stuck).values(state="1:1"))
    second = _samples((await exporter())[0])
    assert second[("smsmeter_command_accept_seconds_count", ())] == 1
    assert second[("smsmeter_command_accept_seconds_bucket", (("le", "0.25"),))] == 1
    assert second[("smsmeter_command_accept_seconds_bucket", (("le", "0.1"),))] == 0
    assert second[("smsmeter_command_receipt_seconds_sum", ())] == pytest.approx(3.0)
    assert second[("smsmeter_command_ack_seconds_sum", ())] == pytest.approx(60.0)
    assert second[("smsmeter_open_commands", ())] == 0
    assert second[("smsmeter_oldest_open_command_age_seconds", ())] == 0
    third = _samples((await exporter())[0])
    assert third[("smsmeter_command_ack_seconds_count", ())] == 1  # each step is counted once

    await engine.dispose()  # the database is gone: the scrape still answers, and says so
    exporter.fleet._engine = _unreachable_engine()  # type: ignore[union-attr]
    down = _samples((await exporter())[0])
    assert down[("smsmeter_fleet_scrape_ok", ())] == 0


def _unreachable_engine() -> AsyncEngine:
    from store.engine import create_engine
    from tests.support.net import free_port

    return create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")


class _FakeTransport:
    """A channel that accepts, rejects or throttles as told."""

    def __init__(self) -> None:
        self.state = TransportState.BOUND
        self.outcomes: list[Exception | None] = [None, SmscRejected(0x45), Throttled(0x58), None]

    async def submit(self, sms: OutboundSms) -> str:
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "abc"

    async def __aenter__(self) -> _FakeTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


async def test_the_channel_is_metered() -> None:
    metrics = Metrics()
    fake = _FakeTransport()
    transport = metrics.metered(fake)
    metrics.watch_transport(transport, window=64)
    sms = OutboundSms("37369000001", b"\x00")
    results = []
    for _ in range(4):
        try:
            results.append(await transport.submit(sms))
        except SmscRejected as exc:
            results.append(type(exc).__name__)
    assert results == ["abc", "SmscRejected", "Throttled", "abc"]
    metrics.webhook_handled("stripe", "forged")
    metrics.notice_sent("sms", "sent")
    samples = _samples((await MetricsExporter(metrics)())[0])
    assert samples[("smsmeter_sms_submits_total", (("outcome", "accepted"),))] == 2
    assert samples[("smsmeter_sms_submits_total", (("outcome", "rejected"),))] == 1
    assert samples[("smsmeter_sms_submits_total", (("outcome", "throttled"),))] == 1
    assert samples[("smsmeter_sms_submit_seconds_count", ())] == 4
    assert samples[("smsmeter_transport_bound", ())] == 1
    assert samples[("smsmeter_transport_state", (("state", "bound"),))] == 1
    assert samples[("smsmeter_transport_state", (("state", "reconnecting"),))] == 0
    assert samples[("smsmeter_sms_window_size", ())] == 64
    assert samples[("smsmeter_sms_window_in_use", ())] == 0
    assert samples[("smsmeter_webhooks_total", (("outcome", "forged"), ("provider", "stripe")))] == 1
    assert samples[("smsmeter_notices_sent_total", (("channel", "sms"), ("outcome", "sent")))] == 1
    fake.state = TransportState.RECONNECTING
    samples = _samples((await MetricsExporter(metrics)())[0])
    assert samples[("smsmeter_transport_bound", ())] == 0
    assert samples[("smsmeter_transport_state", (("state", "reconnecting"),))] == 1


async def test_requests_carry_a_request_id_into_their_log_lines() -> None:
    import logging

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from smsmeter.logs import CorrelationFilter, JsonFormatter
    from web import ops

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(JsonFormatter("web"))
    probe_log = logging.getLogger("smsmeter.test.probe")
    probe_log.addHandler(handler)

    async def ready() -> list[ops.Check]:
        probe_log.warning("probing")
        return [ops.Check("database", True)]

    async def export() -> tuple[bytes, str]:
        return b"", "text/plain"

    app = web.Application()
    ops.setup_routes(app, readiness=ready, export=export)
    try:
        async with TestClient(TestServer(app)) as client:
            given = await client.get("/readyz", headers={"X-Request-ID": "req-42"})
            made = await client.get("/readyz", headers={"X-Request-ID": "bad id <script>"})
            missing = await client.get("/nowhere")
    finally:
        probe_log.removeHandler(handler)
    assert given.headers["X-Request-ID"] == "req-42"
    assert len(made.headers["X-Request-ID"]) == 32
    assert len(missing.headers["X-Request-ID"]) == 32
    assert '"request_id": "req-42"' in lines[0]
    assert made.headers["X-Request-ID"] in lines[1]


class _NeverApplies:
    """A PaymentApplier that is never reached: the database fails first."""

    async def credit(self, conn: object, request: object, now: datetime) -> object:
        raise AssertionError("not reached")

    async def reverse(self, conn: object, request: object, now: datetime) -> None:
        raise AssertionError("not reached")


async def test_a_webhook_our_side_fails_is_counted_as_an_error() -> None:
    import json
    import time

    from payments.provider_webhook import sign_provider_webhook
    from payments.service import WebhookSecrets, WebhookService
    from store.uow import UnitOfWork

    metrics = Metrics()
    dead = _unreachable_engine()
    service = WebhookService(
        UnitOfWork(dead),
        _NeverApplies(),  # type: ignore[arg-type]
        WebhookSecrets(provider_secrets={"kiosk": "kiosk-secret-0123456789"}),
        observer=metrics,
    )
    now = int(time.time())
    body = json.dumps(
        {
            "id": "evt-1",
            "type": "payment.succeeded",
            "created": now,
            "payment": {"id": "tx-1", "amount_minor": 100, "currency": "USD", "account": "010100100010001"},
        }
    ).encode()
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises goes on to the caller
            await service.receive_provider(
                "kiosk", body, str(now), sign_provider_webhook("kiosk-secret-0123456789", now, body)
            )
    finally:
        await dead.dispose()
    samples = _samples((await MetricsExporter(metrics)())[0])
    assert samples[("smsmeter_webhooks_total", (("outcome", "error"), ("provider", "kiosk")))] == 1
