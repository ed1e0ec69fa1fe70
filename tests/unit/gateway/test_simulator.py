"""The simulated SMS network (gateway.simulator): receipts, loss, replies, determinism by seed."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from gateway.errors import NotConnected, SmscRejected, Throttled
from gateway.ports import InboundSms, OutboundSms, Receipt, ReceiptState, TransportState
from gateway.simulator import Reply, SimulatorConfig, SimulatorTransport

METER = "254700000001"


class Collected:
    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.inbound: list[InboundSms] = []
        self.asked: list[OutboundSms] = []

    async def on_receipt(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)

    async def on_inbound(self, sms: InboundSms) -> None:
        self.inbound.append(sms)

    async def echo(self, sms: OutboundSms) -> Sequence[Reply]:
        self.asked.append(sms)
        return [Reply(body=b"ack:" + sms.body, has_udh=False)]


def transport(got: Collected, seed: int = 1, **config: object) -> SimulatorTransport:
    return SimulatorTransport(
        SimulatorConfig(**config),
        got.on_receipt,
        got.on_inbound,  # type: ignore[arg-type]
        rng=random.Random(seed),
        responder=got.echo,
    )


async def test_submit_receipt_and_reply() -> None:
    got = Collected()
    async with transport(got) as t:
        assert t.state is TransportState.BOUND
        message_id = await t.submit(OutboundSms(destination=METER, body=b"\x01\x02"))
        await t.simulator.idle()
    assert [(r.message_id, r.state) for r in got.receipts] == [(message_id, ReceiptState.DELIVERED)]
    assert [s.body for s in got.asked] == [b"\x01\x02"]
    [reply] = got.inbound
    assert (reply.source, reply.destination, reply.body) == (METER, "7444", b"ack:\x01\x02")
    assert t.state is TransportState.STOPPED


async def lost_ids(seed: int) -> tuple[list[str], Collected]:
    got = Collected()
    async with transport(got, seed=seed, loss_rate=0.3) as t:
        ids = [await t.submit(OutboundSms(destination=METER, body=bytes([i]))) for i in range(60)]
        await t.simulator.idle()
    expired = {r.message_id for r in got.receipts if r.state is ReceiptState.EXPIRED}
    return [i for i in ids if i in expired], got


async def test_loss_is_deterministic_for_a_seed() -> None:
    first, got = await lost_ids(seed=42)
    again, _ = await lost_ids(seed=42)
    other, _ = await lost_ids(seed=43)
    assert first == again
    assert first != other
    assert 5 < len(first) < 35
    assert len(got.receipts) == 60  # the lost ones too, as EXPIRED
    assert len(got.inbound) == 60 - len(first)  # lost parts are never answered


async def test_lost_receipts_still_get_replies() -> None:
    got = Collected()
    async with transport(got, receipt_loss_rate=1.0) as t:
        await t.submit(OutboundSms(destination=METER, body=b"\x01"))
        await t.simulator.idle()
    assert got.receipts == []
    assert len(got.inbound) == 1


async def test_rejections() -> None:
    got = Collected()
    async with transport(got) as t:
        t.simulator.reject_next(1, 0x58)
        t.simulator.reject_next(1, 0x0B)
        with pytest.raises(Throttled):
            await t.submit(OutboundSms(destination=METER, body=b"\x01"))
        with pytest.raises(SmscRejected) as caught:
            await t.submit(OutboundSms(destination=METER, body=b"\x01"))
        assert caught.value.status == 0x0B
        assert await t.submit(OutboundSms(destination=METER, body=b"\x01"))


async def test_not_connected_outside_the_context_and_pending_work_is_cancelled_on_exit() -> None:
    got = Collected()
    t = transport(got, receipt_delay_s=3600.0)
    with pytest.raises(NotConnected):
        await t.submit(OutboundSms(destination=METER, body=b"\x01"))
    async with t:
        await t.submit(OutboundSms(destination=METER, body=b"\x01"))
    assert got.receipts == []
    assert len(t.simulator.submitted) == 1
