"""Structured logs: one JSON object a line, with the correlation ids bound in the task."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from smsmeter.logs import CorrelationFilter, JsonFormatter, PlainFormatter
from telemetry import bind_ids, current_ids


def _render(formatter: logging.Formatter, msg: str, **extra: object) -> str:
    record = logging.LogRecord("smsmeter.gateway", logging.INFO, __file__, 1, msg, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    CorrelationFilter().filter(record)
    return formatter.format(record)


def test_json_lines_carry_the_bound_ids_and_extra_wins() -> None:
    with bind_ids(command_id=42, meter="88000000000000000017"):
        with bind_ids(payment_id=7, command_id=43):
            line = json.loads(_render(JsonFormatter("gateway"), "submitted", event_id="evt_1"))
        outer = json.loads(_render(JsonFormatter(), "outer", command_id=99))
    assert line["msg"] == "submitted"
    assert line["command_id"] == 43
    assert line["payment_id"] == 7
    assert line["meter"] == "88000000000000000017"
    assert line["event_id"] == "evt_1"
    assert line["role"] == "gateway"
    assert line["level"] == "info"
    assert isinstance(line["pid"], int)
    assert outer["command_id"] == 99  # passed with extra=, it wins over the bound one
    assert "payment_id" not in outer
    assert dict(current_ids()) == {}


def test_plain_lines_append_the_ids() -> None:
    with bind_ids(command_id=5):
        assert _render(PlainFormatter(), "hello").endswith("smsmeter.gateway: hello [command_id=5]")
    assert _render(PlainFormatter(), "bare").endswith("smsmeter.gateway: bare")


async def test_ids_follow_the_task_and_do_not_leak_between_tasks() -> None:
    async def handle(command_id: int) -> object:
        with bind_ids(command_id=command_id):
            await asyncio.sleep(0)
            return current_ids()["command_id"]

    assert await asyncio.gather(*(handle(i) for i in range(5))) == [0, 1, 2, 3, 4]
    with bind_ids(meter="m1"):
        child = asyncio.create_task(asyncio.sleep(0, result=None))
        seen = await asyncio.create_task(_read_ids())
        await child
    assert seen == {"meter": "m1"}


async def _read_ids() -> dict[str, object]:
    return dict(current_ids())


def test_unknown_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown correlation ids: colour"), bind_ids(colour="red"):
        pass
