"""PostgreSQL LISTEN/NOTIFY across engines: a command enqueued through one engine (as by the web process)
wakes a dispatcher on another (the gateway process) at commit, not at its next poll — the poll here is an
hour, so a send means the notification woke it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

import meter_protocol as mp
from gateway.dispatcher import DispatchConfig, Dispatcher
from gateway.keys import KeyRing
from gateway.outbox import COMMANDS_CHANNEL, CommandRequest, enqueue_commands
from gateway.ports import OutboundSms
from store.engine import create_engine
from store.wakeup import APPLICATION_NAME, connect_args, listen_for_commands
from tests.integration.gateway.gateway_harness import ScriptedNetwork, fleet_of
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, add_meters

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


@asynccontextmanager
async def listening(url: URL, wake: Callable[[], None]) -> AsyncIterator[asyncio.Task[None]]:
    """The command listener running for the block, cancelled after it."""
    listener = asyncio.create_task(listen_for_commands(url, COMMANDS_CHANNEL, wake))
    try:
        yield listener
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


class Network(ScriptedNetwork):
    sent: asyncio.Event

    async def submit(self, sms: OutboundSms) -> str:
        message_id = await super().submit(sms)
        self.sent.set()
        return message_id


async def test_an_enqueue_on_another_engine_wakes_the_dispatcher_at_commit(postgres_url: str) -> None:
    web_engine, gateway_engine = create_engine(postgres_url), create_engine(postgres_url)
    try:
        async with web_engine.begin() as conn:
            meters = await add_meters(conn, 1, NOW)
        network = Network(fleet_of(meters), auto_receipts=False, auto_replies=False)
        network.sent = asyncio.Event()
        dispatcher = Dispatcher(
            gateway_engine, network, config=DispatchConfig(worker_id="test", poll_s=3600.0), clock=lambda: NOW
        )
        wakes: list[str] = []
        woken = asyncio.Event()

        def wake() -> None:
            wakes.append("notified")
            woken.set()
            dispatcher.wake()

        async with asyncio.timeout(60):  # a bound on the test, not a measurement
            running = asyncio.create_task(dispatcher.run())
            try:
                async with listening(gateway_engine.url, wake):
                    await woken.wait()  # listening: it wakes the dispatcher once on connecting
                    woken.clear()
                    async with web_engine.begin() as conn:
                        await enqueue_commands(
                            conn, KeyRing(MASTER_KEY), [CommandRequest(meters[0].id, mp.TopUp(1, 500), "t")], NOW
                        )
                        await asyncio.sleep(0.2)  # the NOTIFY is issued, not yet delivered: nothing woke
                        assert wakes == ["notified"]
                        wakes.append("committed")
                    await woken.wait()
                    assert wakes == ["notified", "committed", "notified"]
                    await network.sent.wait()  # the woken dispatcher claims and sends it
                    assert len(network.submitted) == 1
            finally:
                dispatcher.stop()
                await running
    finally:
        await web_engine.dispose()
        await gateway_engine.dispose()


async def test_the_listener_reconnects_by_itself_after_its_connection_is_killed(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            meters = await add_meters(conn, 1, NOW)
        woken = asyncio.Event()
        wakes = [0]

        def wake() -> None:
            wakes[0] += 1
            woken.set()

        async with asyncio.timeout(50):  # a bound on the test, not a measurement
            async with listening(engine.url, wake) as listener:
                await woken.wait()  # listening
                woken.clear()
                async with engine.begin() as conn:  # as when the database restarts: the backend goes away
                    killed = await conn.scalar(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE application_name = :n AND datname = current_database()"
                        ),
                        {"n": APPLICATION_NAME},
                    )
                assert killed == 1
                await woken.wait()  # listening again: it wakes the dispatcher once, for what it may have missed
                woken.clear()
                async with engine.begin() as conn:
                    request = CommandRequest(meters[0].id, mp.TopUp(1, 500), "t")
                    await enqueue_commands(conn, KeyRing(MASTER_KEY), [request], NOW)
                await woken.wait()  # and notifications come through the new connection
                assert wakes[0] == 3
                assert not listener.done()
    finally:
        await engine.dispose()


async def test_the_listener_connects_as_the_engine_does_with_the_options_in_the_url(postgres_url: str) -> None:
    """Host and port in the URL's query (as a Unix socket folder would be given) and SQLAlchemy's own
    options: the listener reaches the same database the engine does."""
    url = make_url(postgres_url)
    moved = url.set(host="host-in-the-query-wins.invalid", port=None).update_query_dict(
        {"host": url.host or "127.0.0.1", "port": str(url.port or 5432), "prepared_statement_cache_size": "0"}
    )
    assert connect_args(moved)["host"] == url.host
    assert "prepared_statement_cache_size" not in connect_args(moved)
    engine = create_engine(moved.render_as_string(hide_password=False))
    try:
        woken = asyncio.Event()
        async with asyncio.timeout(30):  # a bound on the test, not a measurement
            async with listening(engine.url, woken.set):
                await woken.wait()  # it connected and listens
                async with engine.connect() as conn:  # and the engine reaches the same database
                    listeners = await conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE application_name = :n AND datname = current_database()"
                        ),
                        {"n": APPLICATION_NAME},
                    )
                assert listeners == 1
    finally:
        await engine.dispose()
