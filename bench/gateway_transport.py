"""Transport ceiling: binary submit + delivery receipt over SMPP to the node-smpp SMSC, no persistence.

Prints messages/s for
- bare smpplib 2.2.4 (its blocking Client: this thread submits, a listener thread reads; a lock around
  writes, since smpplib has none; TCP_NODELAY; a window of outstanding submits), and
- gateway.smpp.SmppTransport (asyncio) with the same window,
each counted until every receipt is in; then SmppTransport against our own simulated SMSC
(gateway.smpp_server, what `smsmeter simulate` serves) for comparison. `bare_smpplib_ceiling()` and
`transport_rate()` are reused by the end-to-end gateway bench.

    python -m bench.gateway_transport [--messages 20000] [--window 64] [--size 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smpplib.client
import smpplib.consts

from gateway.ports import InboundSms, OutboundSms, Receipt
from gateway.simulator import SimulatedSmsc, SimulatorConfig
from gateway.smpp import SmppConfig, SmppTransport
from gateway.smpp_server import SmppServerConfig, SmppSimulatorServer
from tests.peers.smsc import NodeSmsc

DESTINATION = "254700000001"
SHORT_NUMBER = "7444"


def bare_smpplib_ceiling(
    host: str, port: int, system_id: str, password: str, messages: int, window: int, size: int, timeout_s: float = 120.0
) -> float:
    """Messages/s (submit + receipt) of smpplib's own Client; blocking, run it in a thread."""
    client = smpplib.client.Client(host, port, timeout=timeout_s, allow_unknown_opt_params=True)
    write_lock = threading.Lock()
    send_pdu = client.send_pdu

    def locked_send(pdu: object) -> bool:
        with write_lock:
            return bool(send_pdu(pdu))

    client.send_pdu = locked_send  # type: ignore[method-assign]
    slots = threading.Semaphore(window)
    all_receipts = threading.Event()
    receipts = 0

    def sent(pdu: object) -> None:
        slots.release()

    def received(pdu: object) -> int:
        nonlocal receipts
        if (getattr(pdu, "esm_class", 0) or 0) & 0x04:
            receipts += 1
            if receipts >= messages:
                all_receipts.set()
        return 0

    client.set_message_sent_handler(sent)
    client.set_message_received_handler(received)
    client.connect()
    client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.bind_transceiver(system_id=system_id, password=password)
    listener = threading.Thread(target=_listen, args=(client,), daemon=True)
    listener.start()
    body = bytes(i % 256 for i in range(size))
    started = time.perf_counter()
    for _ in range(messages):
        slots.acquire()
        with write_lock:
            pdu = smpplib.smpp.make_pdu(
                "submit_sm",
                client=client,
                source_addr_ton=3,
                source_addr_npi=0,
                source_addr=SHORT_NUMBER,
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=DESTINATION,
                esm_class=0,
                data_coding=4,
                registered_delivery=1,
                short_message=body,
            )
            send_pdu(pdu)
    if not all_receipts.wait(timeout_s):
        raise TimeoutError(f"only {receipts} of {messages} receipts")
    elapsed = time.perf_counter() - started
    client._socket.close()  # the listener thread ends on the closed socket
    client._socket = None
    return messages / elapsed


def _listen(client: smpplib.client.Client) -> None:
    with contextlib.suppress(smpplib.exceptions.ConnectionError, OSError, AttributeError):
        client.listen(auto_send_enquire_link=False)


async def transport_rate(
    host: str, port: int, system_id: str, password: str, messages: int, window: int, size: int, timeout_s: float = 120.0
) -> float:
    """Messages/s (submit + receipt) through gateway.smpp.SmppTransport."""
    done = asyncio.Event()
    receipts = 0

    async def on_receipt(receipt: Receipt) -> None:
        nonlocal receipts
        receipts += 1
        if receipts >= messages:
            done.set()

    async def on_inbound(sms: InboundSms) -> None:
        pass

    cfg = SmppConfig(
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        source_addr=SHORT_NUMBER,
        window=window,
        submit_timeout_s=timeout_s,
    )
    body = bytes(i % 256 for i in range(size))
    async with SmppTransport(cfg, on_receipt, on_inbound) as transport:
        queue = iter(range(messages))

        async def worker() -> None:
            for _ in queue:
                await transport.submit(OutboundSms(destination=DESTINATION, body=body))

        started = time.perf_counter()
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(worker() for _ in range(window)))
            await done.wait()
        return messages / (time.perf_counter() - started)


async def receipt_rate(smsc: NodeSmsc, receipts: int, timeout_s: float = 120.0) -> float:
    """Receipts/s SmppTransport takes in (decode, hand to the callback, deliver_sm_resp) when the SMSC
    sends them back to back."""
    done = asyncio.Event()
    count = 0

    async def on_receipt(receipt: Receipt) -> None:
        nonlocal count
        count += 1
        if count >= receipts:
            done.set()

    async def on_inbound(sms: InboundSms) -> None:
        pass

    cfg = SmppConfig(
        host=smsc.host, port=smsc.smpp_port, system_id=smsc.system_id, password=smsc.password, source_addr=SHORT_NUMBER
    )
    async with SmppTransport(cfg, on_receipt, on_inbound):
        started = time.perf_counter()
        await smsc.burst_receipts(receipts)
        async with asyncio.timeout(timeout_s):
            await done.wait()
        return receipts / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the best is printed")
    args = parser.parse_args()
    logging.getLogger("smpp").setLevel(logging.CRITICAL)  # smpplib's Client logs the closed socket at the end
    bare = ours = simulated = receipts = 0.0
    for _ in range(args.rounds):
        async with NodeSmsc() as smsc:
            common = (smsc.host, smsc.smpp_port, smsc.system_id, smsc.password, args.messages, args.window, args.size)
            bare = max(bare, await asyncio.to_thread(bare_smpplib_ceiling, *common))
            await smsc.reset()
            ours = max(ours, await transport_rate(*common))
            await smsc.reset()
            receipts = max(receipts, await receipt_rate(smsc, args.messages))
        simulator = SimulatedSmsc(SimulatorConfig(), random.Random(1))
        async with SmppSimulatorServer(SmppServerConfig(), simulator) as server:
            simulated = max(
                simulated,
                await transport_rate("127.0.0.1", server.port, "bench", "bench", args.messages, args.window, args.size),
            )
    print(
        f"{args.messages} binary submits of {args.size} bytes with receipts, window {args.window}, loopback, "
        f"best of {args.rounds}"
    )
    print(f"bare smpplib ceiling (node-smpp SMSC)        : {bare:8.0f} messages/s")
    print(f"gateway.smpp SmppTransport (node-smpp SMSC)  : {ours:8.0f} messages/s  ({ours / bare:.2f} of the ceiling)")
    print(f"SmppTransport against gateway.smpp_server    : {simulated:8.0f} messages/s")
    print(f"receipts taken in by SmppTransport (burst)   : {receipts:8.0f} receipts/s")


if __name__ == "__main__":
    asyncio.run(main())
