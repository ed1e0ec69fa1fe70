"""The GSM modem transport against an AT-command fake modem on a pty (tests/peers/fake_modem.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from gateway.errors import InvalidPart, NotConnected, SmscRejected, SubmitTimeout, Throttled
from gateway.modem import ModemConfig, ModemTransport
from gateway.pdu_gsm import encode_deliver, encode_status_report
from gateway.ports import OutboundSms, ReceiptState, TransportState
from tests.integration.gateway.inbox import Inbox
from tests.peers.bounds import until
from tests.peers.fake_modem import FakeModem

METER = "254700000001"
UDH = bytes([5, 0, 3, 0x42, 2, 1])


@asynccontextmanager
async def modem_and_transport(inbox: Inbox, **overrides: object) -> AsyncIterator[tuple[FakeModem, ModemTransport]]:
    async with FakeModem() as fake:
        options: dict[str, object] = {
            "connect_timeout_s": 10,
            "command_timeout_s": 2,
            "submit_timeout_s": 2,
            "serial_poll_s": 0.05,
            **overrides,
        }
        config = ModemConfig(port=fake.port, **options)  # type: ignore[arg-type]
        async with ModemTransport(config, inbox.on_receipt, inbox.on_inbound) as transport:
            assert transport.state is TransportState.BOUND
            yield fake, transport


async def test_binary_submit_in_pdu_mode_with_status_report() -> None:
    inbox = Inbox()
    body = UDH + bytes(range(120))
    async with modem_and_transport(inbox) as (fake, transport):
        message_id = await transport.submit(OutboundSms(destination=METER, body=body, has_udh=True))
        await inbox.wait_for(lambda: len(inbox.receipts) == 1)
    [sent] = fake.sent
    assert "AT+CMGF=0" in fake.commands  # PDU mode
    assert f"AT+CMGS={sent.tpdu_length}" in fake.commands
    assert sent.tpdu_length == len(sent.pdu) - 1
    first = sent.pdu[1]
    assert first & 0x03 == 0x01  # SMS-SUBMIT
    assert first & 0x40  # TP-UDHI
    assert first & 0x20  # TP-SRR: status report requested
    # the library's own decoder reads our PDU: its text is the payload byte for byte (chr(byte))
    assert sent.decoded["number"] == "+" + METER
    assert bytes(ord(c) for c in str(sent.decoded["text"])) == bytes(range(120))
    assert sent.pdu.endswith(body)
    assert sent.pdu[sent.pdu.index(body) - 2] == 0x04  # TP-DCS 8-bit (followed by TP-UDL)
    assert message_id == f"{METER}/0"
    [receipt] = inbox.receipts
    assert (receipt.message_id, receipt.state, receipt.error_code) == (message_id, ReceiptState.DELIVERED, 0)


async def test_failed_status_report() -> None:
    inbox = Inbox()
    async with modem_and_transport(inbox) as (fake, transport):
        fake.config.receipt_status = 0x46  # validity period expired
        message_id = await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
        await inbox.wait_for(lambda: len(inbox.receipts) == 1)
    assert (inbox.receipts[0].message_id, inbox.receipts[0].state, inbox.receipts[0].error_code) == (
        message_id,
        ReceiptState.EXPIRED,
        0x46,
    )


async def test_incoming_binary_sms_byte_for_byte_then_deleted() -> None:
    inbox = Inbox()
    body = bytes([6, 5, 4, 0x0B, 0x84, 0x0B, 0x84]) + bytes(range(200, 256))
    async with modem_and_transport(inbox) as (fake, _transport):
        fake.deliver(encode_deliver(METER, body, has_udh=True, sent_at=datetime.now(UTC)))
        await inbox.wait_for(lambda: len(inbox.inbound) == 1)
        await until(lambda: not fake.stored)  # AT+CMGD after the handler returned
    [sms] = inbox.inbound
    assert (sms.source, sms.body, sms.has_udh, sms.data_coding) == (METER, body, True, 0x04)


async def test_sms_stays_on_the_modem_when_the_handler_fails_and_is_read_on_reconnect() -> None:
    calls = 0

    async def failing_once(sms: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("database down")

    inbox = Inbox()
    async with FakeModem() as fake:
        config = ModemConfig(port=fake.port, command_timeout_s=2, serial_poll_s=0.05)
        async with ModemTransport(config, inbox.on_receipt, failing_once):  # type: ignore[arg-type]
            fake.deliver(encode_deliver(METER, b"\xaa\xbb", sent_at=datetime.now(UTC)))
            await until(lambda: calls == 1)
            await asyncio.sleep(0.1)
            assert list(fake.stored) == [1]  # not deleted
        async with ModemTransport(config, inbox.on_receipt, inbox.on_inbound):
            await inbox.wait_for(lambda: len(inbox.inbound) == 1)  # read from storage on connect (AT+CMGL=4)
            await until(lambda: not fake.stored)
    assert inbox.inbound[0].body == b"\xaa\xbb"


async def test_status_report_swallowed_by_a_command_response_is_still_handled() -> None:
    inbox = Inbox()
    async with modem_and_transport(inbox) as (fake, transport):
        fake.config.receipts = False
        await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
        # a +CDS that arrives while the library waits for the next AT+CMGS prompt
        now = datetime.now(UTC)
        report = encode_status_report(0, METER, 0, submitted_at=now, done_at=now)
        original = fake._on_command

        def urc_first(line: str) -> None:
            if line.startswith("AT+CMGS"):
                urc = b"+CDS: " + str(len(report) - 1).encode() + b"\r\n" + report.hex().encode()
                fake._write(b"\r\n" + urc + b"\r\n")
            original(line)

        fake._on_command = urc_first  # type: ignore[method-assign]
        await transport.submit(OutboundSms(destination=METER, body=b"\x02"))
        await inbox.wait_for(lambda: len(inbox.receipts) == 1)
    assert inbox.receipts[0].message_id == f"{METER}/0"


@pytest.mark.parametrize(("code", "error"), [(38, SmscRejected), (42, Throttled)])
async def test_cms_error_is_a_rejection(code: int, error: type[Exception]) -> None:
    async with modem_and_transport(Inbox()) as (fake, transport):
        fake.config.reject.append(code)
        with pytest.raises(error) as caught:
            await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
        assert caught.value.status == code  # type: ignore[attr-defined]
        assert await transport.submit(OutboundSms(destination=METER, body=b"\x02"))


async def test_silent_modem_is_a_submit_timeout() -> None:
    async with modem_and_transport(Inbox(), command_timeout_s=0.3, submit_timeout_s=0.3) as (fake, transport):
        fake.config.silent = True
        with pytest.raises(SubmitTimeout):
            await transport.submit(OutboundSms(destination=METER, body=b"\x01"))


async def test_oversized_part_is_refused_before_the_modem() -> None:
    async with modem_and_transport(Inbox()) as (fake, transport):
        with pytest.raises(InvalidPart):
            await transport.submit(OutboundSms(destination=METER, body=bytes(141)))
    assert not fake.sent


async def test_no_modem_on_the_port_is_not_connected(tmp_path: object) -> None:
    config = ModemConfig(port="/dev/does-not-exist", connect_timeout_s=2)
    with pytest.raises(NotConnected):
        async with ModemTransport(config, Inbox().on_receipt, Inbox().on_inbound):
            pass


async def test_lost_serial_line_reconnects() -> None:
    inbox = Inbox()
    fake = FakeModem()
    await fake.__aenter__()
    config = ModemConfig(
        port=fake.port,
        command_timeout_s=2,
        connect_timeout_s=5,
        serial_poll_s=0.05,
        reconnect_min_s=0.05,
        reconnect_max_s=0.1,
    )
    async with ModemTransport(config, inbox.on_receipt, inbox.on_inbound) as transport:
        await fake.__aexit__()  # the modem is unplugged
        await until(lambda: transport.state is TransportState.RECONNECTING)
        with pytest.raises(NotConnected):
            await transport.submit(OutboundSms(destination=METER, body=b"\x01"))
