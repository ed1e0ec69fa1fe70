"""Time bounds for tests that talk to peers: a hard per-test limit (a hung test dumps every stack and
ends the run) and `until`, a bounded wait for a condition."""

from __future__ import annotations

import asyncio
import faulthandler
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterator


def bounded_test(limit_s: float) -> Iterator[None]:
    """Use in a fixture: `yield from bounded_test(60.0)`."""
    faulthandler.dump_traceback_later(limit_s, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


async def until(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 5.0, poll_s: float = 0.01) -> None:
    """Wait until `check()` is true (it may be a coroutine function); TimeoutError after timeout_s."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(poll_s)
