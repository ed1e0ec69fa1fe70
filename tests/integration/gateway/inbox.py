"""What a transport hands to its callbacks, collected for assertions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.ports import InboundSms, Receipt


class Inbox:
    """Collects what the transport hands to its callbacks."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.inbound: list[InboundSms] = []
        self._changed = asyncio.Event()

    async def on_receipt(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)
        self._changed.set()

    async def on_inbound(self, sms: InboundSms) -> None:
        self.inbound.append(sms)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
