"""The SMPP transport against a real SMSC (node-smpp) on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from gateway.errors import BindRejected, InvalidPart, NotConnected, SmscRejected, Throttled
from gateway.ports import InboundSms, OutboundSms, ReceiptState, TransportState
from gateway.smpp import SmppConfig, SmppTransport
from gateway.smpp_receipts import IdFormat, normalise_message_id
from tests.integration.gateway.inbox import Inbox
from tests.peers.bounds import until
from tests.peers.smsc import MobileOriginated, NodeSmsc, Submit

SHORT_NUMBER = "7444"
METER = "254700000001"


def config_for(smsc: NodeSmsc, **overrides: object) -> SmppConfig:
    cfg = SmppConfig(
        host=smsc.host,
        port=smsc.smpp_port,
        system_id=smsc.system_id,
        password=smsc.password,
        system_type="METER",
        source_addr=SHORT_NUMBER,
        source_ton=3,
        source_npi=0,
        submit_timeout_s=5.0,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        enquire_link_interval_s=5.0,
        enquire_link_timeout_s=2.0,
    )
    return replace(cfg, **overrides)  # type: ignore[arg-type]


@asynccontextmanager
async def bound(smsc: NodeSmsc, inbox: Inbox, **overrides: object) -> AsyncIterator[SmppTransport]:
    async with SmppTransport(config_for(smsc, **overrides), inbox.on_receipt, inbox.on_inbound) as transport:
        assert transport.state is TransportState.BOUND
        yield transport


async def test_binds_as_transceiver_with_system_type(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    async with bound(smsc, inbox) as transport:
        sessions = await smsc.sessions()
        assert [(s["mode"], s["system_type"]) for s in sessions] == [("transceiver", "METER")]
        assert transport.stats.binds == 1
    assert transport.state is TransportState.STOPPED
    await asyncio.sleep(0.05)
    assert await smsc.sessions() == []  # unbound on exit


async def test_wrong_password_is_a_bind_rejection(smsc: NodeSmsc) -> None:
    with pytest.raises(BindRejected) as caught:
        async with bound(smsc, Inbox(), password="wrong"):
            pass
    assert caught.value.status == 0x0D


async def test_binary_submit_with_receipt(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    body = bytes(range(100))
    async with bound(smsc, inbox) as transport:
        message_id = await transport.submit(OutboundSms(destination=METER, body=body))
        await inbox.wait_for(lambda: len(inbox.receipts) == 1)
    [submit] = await smsc.submits()
    assert submit.body == body
    assert (submit.data_coding, submit.esm_class, submit.registered_delivery) == (0x04, 0x00, 1)
    assert (submit.source, submit.source_addr_ton, submit.source_addr_npi) == (SHORT_NUMBER, 3, 0)
    assert (submit.destination, submit.dest_addr_ton, submit.dest_addr_npi) == (METER, 1, 1)
    assert message_id == normalise_message_id(submit.message_id or "")
    [receipt] = inbox.receipts
    assert receipt.message_id == message_id
    assert receipt.state is ReceiptState.DELIVERED
    assert receipt.error_code == 0
    assert receipt.done_at is not None


def concat_parts(payload: bytes, ref: int, size: int = 134) -> list[bytes]:
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [bytes([5, 0, 3, ref, len(chunks), n]) + chunk for n, chunk in enumerate(chunks, 1)]


async def test_multipart_with_udh(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    payload = bytes(i % 251 for i in range(300))
    parts = concat_parts(payload, ref=0x42)
    async with bound(smsc, inbox) as transport:
        ids = [await transport.submit(OutboundSms(destination=METER, body=p, has_udh=True)) for p in parts]
        await inbox.wait_for(lambda: len(inbox.receipts) == 3)
    submits = await smsc.submits()
    assert [s.body for s in submits] == parts
    assert all(s.esm_class == 0x40 and s.data_coding == 0x04 for s in submits)
    assert b"".join(s.body[6:] for s in submits) == payload
    assert len(set(ids)) == 3
    assert sorted(r.message_id for r in inbox.receipts) == sorted(ids)


async def test_rejected_submit_carries_the_status(smsc: NodeSmsc) -> None:
    async with bound(smsc, Inbox()) as transport:
        await smsc.reject_next(1, 0x0B)  # ESME_RINVDSTADR
        with pytest.raises(SmscRejected) as caught:
            await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
        assert caught.value.status == 0x0B
        assert not isinstance(caught.value, Throttled)
        assert await transport.submit(OutboundSms(destination=METER, body=b"\x02"))  # the bind survives
        assert transport.stats.rejected == 1


async def test_throttled_submit_backs_off(smsc: NodeSmsc) -> None:
    loop = asyncio.get_running_loop()
    async with bound(smsc, Inbox(), throttle_backoff_s=0.3) as transport:
        await smsc.reject_next(1, 0x58)  # ESME_RTHROTTLED
        with pytest.raises(Throttled) as caught:
            await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
        assert caught.value.status == 0x58
        throttled_at = loop.time()
        await transport.submit(OutboundSms(destination=METER, body=b"\x02"))
        assert loop.time() - throttled_at >= 0.25  # waited for the backoff before sending again
        assert transport.stats.throttled == 1


async def test_submits_are_paced_to_the_configured_rate(smsc: NodeSmsc) -> None:
    loop = asyncio.get_running_loop()
    async with bound(smsc, Inbox(), rate_per_s=50.0) as transport:
        started = loop.time()
        await asyncio.gather(*(transport.submit(OutboundSms(destination=METER, body=bytes([i]))) for i in range(11)))
        assert loop.time() - started >= 0.18  # 10 intervals of 20 ms


async def test_generic_nack_to_a_submit_is_a_rejection(smsc: NodeSmsc) -> None:
    await smsc.configure(hold_responses=True)
    async with bound(smsc, Inbox()) as transport:
        task = asyncio.ensure_future(transport.submit(OutboundSms(destination=METER, body=b"\x01")))
        [submit] = await smsc.wait_submits(1)
        await smsc.send_raw(bytes.fromhex("00000010800000000000000a") + submit.sequence.to_bytes(4, "big"))
        with pytest.raises(SmscRejected) as caught:
            await asyncio.wait_for(task, 5)
        assert caught.value.status == 0x0A
        assert transport.state is TransportState.BOUND


async def test_receipt_before_submit_resp_reaches_the_callback(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    await smsc.configure(receipt_before_resp=True)
    async with bound(smsc, inbox) as transport:
        message_id = await transport.submit(OutboundSms(destination=METER, body=b"\x01\x02"))
        # the receipt was read (and handed on) before the submit_sm_resp that carried the id
        assert [r.message_id for r in inbox.receipts] == [message_id]


async def test_duplicate_and_unknown_receipts_are_passed_on(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    await smsc.configure(duplicate_receipts=True)
    async with bound(smsc, inbox) as transport:
        message_id = await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
        await inbox.wait_for(lambda: len(inbox.receipts) == 2)
        known = await smsc.send_receipt("DEADBEEF99", stat="UNDELIV", err=34)
        await inbox.wait_for(lambda: len(inbox.receipts) == 3)
    assert known is False
    assert [r.message_id for r in inbox.receipts[:2]] == [message_id, message_id]
    unknown = inbox.receipts[2]
    assert (unknown.message_id, unknown.state, unknown.error_code) == ("deadbeef99", ReceiptState.UNDELIVERABLE, 34)
    acks = await smsc.events("deliver_sm_resp")
    assert [a["status"] for a in acks] == [0, 0, 0]


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("EXPIRED", ReceiptState.EXPIRED),
        ("UNDELIV", ReceiptState.UNDELIVERABLE),
        ("REJECTD", ReceiptState.REJECTED),
    ],
)
async def test_failed_receipt_states_from_text_only(smsc: NodeSmsc, stat: str, state: ReceiptState) -> None:
    inbox = Inbox()
    await smsc.configure(receipt_tlvs=False, receipt_stat=stat, receipt_err=11)
    async with bound(smsc, inbox) as transport:
        message_id = await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
        await inbox.wait_for(lambda: len(inbox.receipts) == 1)
    assert (inbox.receipts[0].message_id, inbox.receipts[0].state, inbox.receipts[0].error_code) == (
        message_id,
        state,
        11,
    )


async def test_hex_submit_ids_match_decimal_receipt_ids(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    # this SMSC answers submits with zero-padded upper-case hex ids but writes decimal ids in receipts
    await smsc.configure(id_format="hex", receipt_id_format="decimal", receipt_tlvs=False)
    ids = {"resp_id_format": IdFormat.HEX, "receipt_id_format": IdFormat.DECIMAL}
    async with bound(smsc, inbox, **ids) as transport:
        message_id = await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
        await inbox.wait_for(lambda: len(inbox.receipts) == 1)
    [submit] = await smsc.submits()
    assert submit.message_id == "00000F4240"
    assert message_id == "f4240"
    assert inbox.receipts[0].message_id == "f4240"  # from "id:1000000" in the text


async def test_oversized_part_is_invalid_and_never_sent(smsc: NodeSmsc) -> None:
    async with bound(smsc, Inbox()) as transport:
        with pytest.raises(InvalidPart):
            await transport.submit(OutboundSms(destination=METER, body=bytes(141)))
        with pytest.raises(InvalidPart):
            await transport.submit(OutboundSms(destination="+44 20", body=b"\x01"))
    assert await smsc.submits() == []


async def test_responder_answers_submits_with_mo(smsc: NodeSmsc) -> None:
    inbox = Inbox()

    async def meter(submit: Submit) -> list[MobileOriginated]:
        return [MobileOriginated(source=submit.destination, destination=submit.source, body=b"ack" + submit.body)]

    async with bound(smsc, inbox) as transport, smsc.responder(meter):
        for i in range(3):
            await transport.submit(OutboundSms(destination=METER, body=bytes([i])))
        await inbox.wait_for(lambda: len(inbox.inbound) == 3)
    assert sorted(s.body for s in inbox.inbound) == [b"ack\x00", b"ack\x01", b"ack\x02"]
    assert {(s.source, s.destination) for s in inbox.inbound} == {(METER, SHORT_NUMBER)}


async def test_mo_delivery(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    async with bound(smsc, inbox):
        status = await smsc.inject_mo(
            MobileOriginated(
                source=METER,
                destination=SHORT_NUMBER,
                body=b"\x06\x05\x04\x0b\x84\x0b\x84" + b"\xaa" * 20,
                has_udh=True,
            )
        )
        await inbox.wait_for(lambda: len(inbox.inbound) == 1)
    assert status == 0
    [sms] = inbox.inbound
    assert (sms.source, sms.destination, sms.has_udh, sms.data_coding) == (METER, SHORT_NUMBER, True, 4)
    assert sms.body == b"\x06\x05\x04\x0b\x84\x0b\x84" + b"\xaa" * 20


async def test_failing_handler_is_answered_with_a_temporary_error(smsc: NodeSmsc) -> None:
    async def broken(sms: InboundSms) -> None:
        raise RuntimeError("database down")

    async with SmppTransport(config_for(smsc), Inbox().on_receipt, broken) as transport:
        status = await smsc.inject_mo(MobileOriginated(source=METER, destination=SHORT_NUMBER, body=b"\x01"))
        assert status == 0x64  # ESME_RX_T_APPN: the SMSC keeps it and redelivers
        assert transport.state is TransportState.BOUND


async def test_slow_handler_is_answered_with_a_temporary_error(smsc: NodeSmsc) -> None:
    async def stuck(sms: InboundSms) -> None:
        await asyncio.sleep(60)

    cfg = config_for(smsc, handler_timeout_s=0.3)
    async with SmppTransport(cfg, Inbox().on_receipt, stuck) as transport:
        status = await smsc.inject_mo(MobileOriginated(source=METER, destination=SHORT_NUMBER, body=b"\x01"))
        assert status == 0x64
        assert transport.state is TransportState.BOUND


async def test_drop_with_a_full_window_then_reconnect(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    await smsc.configure(hold_responses=True)
    async with bound(smsc, inbox, window=8) as transport:
        outstanding = [
            asyncio.ensure_future(transport.submit(OutboundSms(destination=METER, body=bytes([i])))) for i in range(12)
        ]
        await smsc.wait_submits(8)  # the window is full: 8 sent, 4 waiting for a slot
        await asyncio.sleep(0.05)
        assert len(await smsc.submits()) == 8
        await smsc.configure(hold_responses=False)
        await smsc.drop()
        results = await asyncio.wait_for(asyncio.gather(*outstanding, return_exceptions=True), 5)
        # every submit on the dropped connection fails with NotConnected; none is reported as sent
        assert all(isinstance(r, NotConnected) for r in results[:8])
        assert all(isinstance(r, NotConnected | str) for r in results[8:])
        await transport.wait_bound(5)
        assert (transport.stats.drops, transport.stats.binds) == (1, 2)
        message_id = await transport.submit(OutboundSms(destination=METER, body=b"\xff"))
        await inbox.wait_for(lambda: any(r.message_id == message_id for r in inbox.receipts))


async def test_submit_while_disconnected_raises_not_connected(smsc: NodeSmsc) -> None:
    async with bound(smsc, Inbox(), reconnect_min_s=1.0, reconnect_max_s=1.0) as transport:
        await smsc.drop()
        await until(lambda: transport.state is not TransportState.BOUND)
        with pytest.raises(NotConnected):
            await transport.submit(OutboundSms(destination=METER, body=b"\x01"))


async def test_enquire_link_timeout_detects_a_dead_peer(smsc: NodeSmsc) -> None:
    async with bound(smsc, Inbox(), enquire_link_interval_s=0.1, enquire_link_timeout_s=1.0) as transport:

        async def answered_twice() -> bool:  # enquire_link is sent when the link is idle, and answered
            return len(await smsc.events("enquire_link")) >= 2

        await until(answered_twice)
        assert transport.stats.enquire_link_timeouts == 0
        await smsc.configure(answer_enquire_link=False)
        await until(lambda: transport.stats.drops > 0)
        assert transport.stats.enquire_link_timeouts == 1
        assert "enquire_link" in transport.stats.last_drop_reason
        await smsc.configure(answer_enquire_link=True)
        await transport.wait_bound(5)
        assert await transport.submit(OutboundSms(destination=METER, body=b"\x01"))


async def test_enquire_link_from_the_smsc_is_answered(smsc: NodeSmsc) -> None:
    async with bound(smsc, Inbox()) as transport:
        await smsc.send_raw(bytes.fromhex("00000010000000150000000000000077"))
        await until(lambda: smsc.events("enquire_link_resp"))
        [resp] = await smsc.events("enquire_link_resp")
        assert resp["sequence"] == 0x77
        assert transport.state is TransportState.BOUND


async def test_unbind_from_the_smsc_is_answered_then_rebound(smsc: NodeSmsc) -> None:
    async with bound(smsc, Inbox()) as transport:
        assert await smsc.unbind() == 1
        await until(lambda: transport.stats.binds == 2)
        assert [e["status"] for e in await smsc.events("unbind_resp")] == [0]
        assert transport.stats.last_drop_reason == "unbound by the SMSC"
        assert await transport.submit(OutboundSms(destination=METER, body=b"\x01"))


async def test_unknown_request_is_answered_with_generic_nack(smsc: NodeSmsc) -> None:
    async with bound(smsc, Inbox()) as transport:
        await smsc.send_raw(bytes.fromhex("00000010000000420000000000000099"))  # no such command id
        await until(lambda: smsc.events("generic_nack"))
        [nack] = await smsc.events("generic_nack")
        assert (nack["status"], nack["sequence"]) == (0x03, 0x99)
        assert transport.state is TransportState.BOUND


async def test_partial_pdu_drops_the_connection_instead_of_desyncing(smsc: NodeSmsc) -> None:
    inbox = Inbox()
    async with bound(smsc, inbox, read_timeout_s=0.3) as transport:
        # 100 bytes promised, 17 sent
        await smsc.send_raw(bytes.fromhex("0000006400000005000000000000000500"))
        await until(lambda: transport.stats.binds == 2)
        assert "partial PDU" in transport.stats.last_drop_reason
        assert await transport.submit(OutboundSms(destination=METER, body=b"\x01"))


async def test_impossible_length_drops_the_connection(smsc: NodeSmsc) -> None:
    async with bound(smsc, Inbox()) as transport:
        await smsc.send_raw(bytes.fromhex("00000008000000050000000000000005"))
        await until(lambda: transport.stats.binds == 2)
        assert "command_length" in transport.stats.last_drop_reason


async def test_smsc_down_at_start_then_up(smsc_factory: Callable[..., object]) -> None:
    smsc = await smsc_factory()  # type: ignore[misc]
    port = smsc.smpp_port
    await smsc._stop()
    cfg = replace(config_for(smsc), port=port, connect_timeout_s=0.5)
    async with SmppTransport(cfg, Inbox().on_receipt, Inbox().on_inbound) as transport:
        assert transport.state is TransportState.RECONNECTING
        with pytest.raises(NotConnected):
            await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
