"""The simulated SMSC behind a real SMPP port (gateway.smpp_server) with the SMPP transport as client."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from gateway.errors import BindRejected, Throttled
from gateway.ports import InboundSms, OutboundSms, ReceiptState, TransportState
from gateway.simulator import Reply, SimulatedSmsc, SimulatorConfig
from gateway.smpp import SmppConfig, SmppTransport
from gateway.smpp_server import SmppServerConfig, SmppSimulatorServer
from tests.integration.gateway.inbox import Inbox
from tests.peers.bounds import until

METER = "254700000001"
SHORT_NUMBER = "7444"


async def echo(sms: OutboundSms) -> Sequence[Reply]:
    return [Reply(body=bytes([6, 5, 4, 0x0B, 0x84, 0x0B, 0x84]) + sms.body[::-1], has_udh=True)]


@asynccontextmanager
async def server(**config: object) -> AsyncIterator[SmppSimulatorServer]:
    simulator = SimulatedSmsc(
        SimulatorConfig(short_number=SHORT_NUMBER, **config),  # type: ignore[arg-type]
        random.Random(5),
        echo,
    )
    async with SmppSimulatorServer(SmppServerConfig(system_id="meters", password="pw"), simulator) as srv:
        assert srv.port > 0
        yield srv


def client_config(srv: SmppSimulatorServer, **overrides: object) -> SmppConfig:
    options: dict[str, object] = {
        "system_id": "meters",
        "password": "pw",
        "source_addr": SHORT_NUMBER,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "submit_timeout_s": 5.0,
        **overrides,
    }
    return SmppConfig(host="127.0.0.1", port=srv.port, **options)  # type: ignore[arg-type]


async def test_submit_receipt_and_reply_over_smpp() -> None:
    inbox = Inbox()
    async with server() as srv, SmppTransport(client_config(srv), inbox.on_receipt, inbox.on_inbound) as client:
        ids = [await client.submit(OutboundSms(destination=METER, body=bytes([1, 2, i]))) for i in range(3)]
        await inbox.wait_for(lambda: len(inbox.receipts) == 3 and len(inbox.inbound) == 3)
    assert sorted(r.message_id for r in inbox.receipts) == sorted(ids)
    assert {r.state for r in inbox.receipts} == {ReceiptState.DELIVERED}
    replies = sorted(inbox.inbound, key=lambda s: s.body)
    assert [(s.source, s.destination, s.has_udh, s.data_coding) for s in replies] == [
        (METER, SHORT_NUMBER, True, 4)
    ] * 3
    assert [s.body[7:] for s in replies] == [bytes([i, 2, 1]) for i in range(3)]
    assert [s.sms.body for s in srv.simulator.submitted] == [bytes([1, 2, i]) for i in range(3)]


async def test_wrong_password_is_refused() -> None:
    async with server() as srv:
        with pytest.raises(BindRejected):
            async with SmppTransport(client_config(srv, password="nope"), Inbox().on_receipt, Inbox().on_inbound):
                pass


async def test_throttling_reaches_the_client() -> None:
    async with (
        server() as srv,
        SmppTransport(client_config(srv, throttle_backoff_s=0.01), Inbox().on_receipt, Inbox().on_inbound) as client,
    ):
        srv.simulator.reject_next(1, 0x58)
        with pytest.raises(Throttled):
            await client.submit(OutboundSms(destination=METER, body=b"\x01"))
        assert await client.submit(OutboundSms(destination=METER, body=b"\x01"))


async def test_receipts_wait_for_a_receiver_across_a_reconnect() -> None:
    inbox = Inbox()
    async with (
        server(receipt_delay_s=0.3) as srv,
        SmppTransport(client_config(srv), inbox.on_receipt, inbox.on_inbound) as client,
    ):
        message_id = await client.submit(OutboundSms(destination=METER, body=b"\x01"))
        await srv.drop_connections()
        await until(lambda: client.stats.binds == 2)
        await inbox.wait_for(lambda: len(inbox.receipts) == 1)
        assert inbox.receipts[0].message_id == message_id
        assert client.state is TransportState.BOUND


async def test_injected_mo() -> None:
    inbox = Inbox()
    async with server() as srv, SmppTransport(client_config(srv), inbox.on_receipt, inbox.on_inbound):
        srv.inject_mo(
            InboundSms(
                source=METER,
                destination=SHORT_NUMBER,
                body=b"\xa5",
                has_udh=False,
                data_coding=4,
                received_at=datetime.now(UTC),
            )
        )
        await inbox.wait_for(lambda: len(inbox.inbound) == 1)
    assert inbox.inbound[0].body == b"\xa5"
