"""The gateway's pacing of its group commits: at once when idle, one interval apart when busy."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from gateway.writegate import Pacer


def _finishes_without_waiting(turn: Coroutine[Any, Any, None]) -> bool:
    """Run the coroutine's first step: True if it returned at once, False if it suspended (then it is closed)."""
    try:
        turn.send(None)
    except StopIteration:
        return True
    turn.close()
    return False


async def test_an_idle_writer_writes_at_once_and_a_busy_one_waits_out_the_interval() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(0.05)
    assert _finishes_without_waiting(pacer.turn())  # the first transaction: no wait
    started = loop.time()
    await pacer.turn()  # the next one at once after: waits out the interval
    assert loop.time() - started >= 0.049
    await asyncio.sleep(0.06)  # quiet for longer than the interval
    assert _finishes_without_waiting(pacer.turn())
    assert not _finishes_without_waiting(pacer.turn())


async def test_no_interval_never_waits() -> None:
    pacer = Pacer(0.0)
    assert all(_finishes_without_waiting(pacer.turn()) for _ in range(3))
