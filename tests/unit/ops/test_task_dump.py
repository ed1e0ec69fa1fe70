"""`kill -USR1` on a running service logs each task and the chain of awaits it is suspended in."""

from __future__ import annotations

import asyncio

from smsmeter.app import _awaiting


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


async def test_the_dump_names_every_await_down_to_where_the_task_waits() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_outer(event))
    await asyncio.sleep(0)
    where = _awaiting(task.get_coro())
    assert [w.rsplit(" ", 1)[1] for w in where[:3]] == ["_outer", "_inner", "wait"]
    event.set()
    await task
