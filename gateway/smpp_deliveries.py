"""The deliver_sm side of the SMPP transport: delivery receipts and MO SMS handed to their callbacks, and the
deliver_sm_resp sent once the callback is done — ESME_RX_T_APPN when it raised or took longer than
`handler_timeout_s`, so the SMSC redelivers: nothing is acknowledged that was not handed over. A callback
that hands back a future (the dispatcher's and the inbound path's do) is followed by a done-callback; any
other runs in a task owned here. Used by `gateway.smpp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from gateway.errors import Stopped
from gateway.pdu_smpp import (
    DELIVER_SM_RESP_ID,
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE,
    ESM_TYPE_MASK,
    ESM_UDHI,
    ESME_ROK,
    ESME_RX_P_APPN,
    ESME_RX_T_APPN,
    PduDecodeError,
    decode_deliver_sm,
    encode_response,
)
from gateway.ports import InboundHandler, InboundSms, Receipt, ReceiptHandler
from gateway.smpp_link import Link, LinkLost, SmppConfig, SmppStats
from gateway.smpp_receipts import ReceiptFormatError, parse_receipt

log = logging.getLogger("smsmeter.gateway.smpp")


class Deliveries:
    """Hands each deliver_sm to its callback and answers it; `handlers` are the callbacks under way."""

    def __init__(
        self, config: SmppConfig, stats: SmppStats, on_receipt: ReceiptHandler, on_inbound: InboundHandler
    ) -> None:
        self.config = config
        self.stats = stats
        self._on_receipt = on_receipt
        self._on_inbound = on_inbound
        self.closing = False
        self._handlers: dict[asyncio.Future[Any], float] = {}  # callbacks under way and when they started

    def on_deliver_sm(self, conn: Link, sequence: int, data: bytes) -> None:
        try:
            pdu = decode_deliver_sm(data)
        except PduDecodeError as exc:
            self.stats.malformed += 1
            log.warning("unreadable deliver_sm (%s): %s", exc.reason, data.hex())
            conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, ESME_RX_P_APPN))
            return
        event: Receipt | InboundSms
        if pdu.esm_class & ESM_TYPE_MASK in (ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE):
            try:
                event = parse_receipt(
                    receipted_message_id=pdu.receipted_message_id,
                    message_state=pdu.message_state,
                    network_error_code=pdu.network_error_code,
                    text=pdu.body,
                    id_format=self.config.receipt_id_format,
                )
            except ReceiptFormatError as exc:  # nothing to hand on, and a redelivery would not be better
                self.stats.malformed += 1
                log.warning("%s; deliver_sm %s", exc, data.hex())
                conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, ESME_ROK))
                return
            self.stats.receipts += 1
        else:
            self.stats.inbound += 1
            event = InboundSms(
                source=pdu.source_addr,
                destination=pdu.destination_addr,
                body=pdu.body,
                has_udh=bool(pdu.esm_class & ESM_UDHI),
                data_coding=pdu.data_coding,
                received_at=datetime.now(UTC),
            )
        loop = asyncio.get_running_loop()
        try:
            waiting = self._on_receipt(event) if isinstance(event, Receipt) else self._on_inbound(event)
        except Exception:  # the handler's failure must not kill the connection; the SMSC redelivers
            log.exception("deliver_sm handler failed; answering ESME_RX_T_APPN")
            with contextlib.suppress(LinkLost):
                conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, ESME_RX_T_APPN))
            return
        if isinstance(waiting, asyncio.Future):
            # a handler that hands back a future (the dispatcher's and the inbound path's do) is awaited
            # by a callback: no task per message
            self._handlers[waiting] = loop.time()
            waiting.add_done_callback(functools.partial(self._answer_deliver_sm, conn, sequence))
            return
        task = loop.create_task(self._deliver(conn, sequence, waiting))
        self._handlers[task] = loop.time()
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Future[Any]) -> None:
        self._handlers.pop(task, None)

    def _answer_deliver_sm(self, conn: Link, sequence: int, waiting: asyncio.Future[Any]) -> None:
        self._handlers.pop(waiting, None)
        status = ESME_ROK
        if waiting.cancelled():
            if self.closing:
                return
            log.error("deliver_sm handler took over %s s; answering ESME_RX_T_APPN", self.config.handler_timeout_s)
            status = ESME_RX_T_APPN
        elif isinstance(exc := waiting.exception(), Stopped):
            log.info("deliver_sm while %s; answering ESME_RX_T_APPN, the SMSC delivers it again", exc)
            status = ESME_RX_T_APPN
        elif exc is not None:
            log.error("deliver_sm handler failed; answering ESME_RX_T_APPN", exc_info=exc)
            status = ESME_RX_T_APPN
        if conn.alive:
            with contextlib.suppress(LinkLost):
                conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, status))

    async def _deliver(self, conn: Link, sequence: int, waiting: Awaitable[None]) -> None:
        """Await one receipt / MO callback, then answer the deliver_sm. The callback's time is
        bounded by `_sweep_handlers` (one sweeper, not a timer per message)."""
        status = ESME_ROK
        try:
            await waiting
        except asyncio.CancelledError:
            if self.closing:
                raise
            log.error("deliver_sm handler took over %s s; answering ESME_RX_T_APPN", self.config.handler_timeout_s)
            status = ESME_RX_T_APPN
        except Stopped as exc:
            log.info("deliver_sm while %s; answering ESME_RX_T_APPN, the SMSC delivers it again", exc)
            status = ESME_RX_T_APPN
        except Exception:  # the handler's failure must not kill the connection; the SMSC redelivers
            log.exception("deliver_sm handler failed; answering ESME_RX_T_APPN")
            status = ESME_RX_T_APPN
        if conn.alive:
            with contextlib.suppress(LinkLost):
                conn.send_bytes(encode_response(DELIVER_SM_RESP_ID, sequence, status))

    async def sweep(self) -> None:
        """Cancel callbacks that run longer than handler_timeout_s (their deliver_sm gets a temporary error)."""
        limit = self.config.handler_timeout_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = loop.time()
            overdue = []
            for task, started in self._handlers.items():  # in the order they started
                if now - started <= limit:
                    break
                overdue.append(task)
            for task in overdue:
                if not task.done():
                    task.cancel()

    async def drain(self) -> None:
        """Closing: wait up to `handler_timeout_s` for the callbacks under way, then cancel the rest."""
        if self._handlers:
            log.info(
                "closing: %d deliver_sm callbacks under way; waiting up to %s s",
                len(self._handlers),
                self.config.handler_timeout_s,
            )
            _done, still = await asyncio.wait(set(self._handlers), timeout=self.config.handler_timeout_s)
            if still:
                log.warning("closing: %d deliver_sm callbacks never ended: %s", len(still), list(still)[:5])
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still)
