"""Key change over the air (docs/protocol.md §3.3) against reference meters: the new key is stored pending,
the change is sealed under the key in force, the meter's acknowledgement under the new key makes it the key in
force and retires the old one, and the next command is sealed under the new key and reaches 1:1. A meter that
does not answer keeps its old key. A group's change is a throttled bulk job. Both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

import meter_protocol as mp
from billing import control, meter_keys
from billing.errors import Conflict
from config import load_settings
from gateway.keys import KeyRing
from gateway.outbox import get_command
from smsmeter.billing_setup import build_billing
from smsmeter.wiring import running_gateway
from store.crypto import unwrap_from_storage
from store.schema.auth import audit_log
from store.schema.commands import commands
from store.schema.registry import meter_keys as keys_table
from store.schema.registry import meters
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, OPERATOR, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")

NEW_KEY = bytes(range(100, 116))


async def _wait_state(uow: UnitOfWork, command_id: int, timeout_s: float = 30) -> str:
    async with asyncio.timeout(timeout_s):
        while True:
            async with uow.connect() as conn:
                view = await get_command(conn, command_id)
            if view.is_final:
                return view.state.value
            await asyncio.sleep(0.05)


async def _keys_of(uow: UnitOfWork, meter_id: int) -> list[tuple[int, str]]:
    async with uow.connect() as conn:
        k = keys_table.c
        rows = await conn.execute(select(k.key_id, k.status).where(k.meter_id == meter_id).order_by(k.key_id))
        return [(r.key_id, r.status) for r in rows]


async def test_a_key_change_reaches_1_1_under_the_new_key(engine: object, uow: UnitOfWork) -> None:
    settings = load_settings(
        None, {"SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.01", "SMSMETER_SIMULATOR_ACK_DELAY_S": "0.01"}
    )
    keys = KeyRing(MASTER_KEY)
    billing = build_billing(settings, uow, keys)
    _, meter = await new_subscriber(uow)
    assert meter is not None
    # queued before the gateway runs: the simulated meter answers within milliseconds once it does
    now = datetime.now(UTC)
    started = await meter_keys.change_meter_key(uow, OPERATOR, meter.id, now, keys=keys, new_key=lambda: NEW_KEY)
    assert (started.key_id, started.pending_key_id) == (0, 1)
    assert await _keys_of(uow, meter.id) == [(0, "active"), (1, "pending")]
    async with uow.connect() as conn:
        frame = (await get_command(conn, started.command_id)).frame
    header = mp.peek_header(frame)
    assert header.key_id == 0  # sealed under the key in force
    with pytest.raises(Conflict):  # one change at a time
        await meter_keys.change_meter_key(uow, OPERATOR, meter.id, now, keys=keys)
    async with running_gateway(settings, engine, keys, billing.on_gateway_event) as gateway:  # type: ignore[arg-type]
        assert gateway.fleet is not None
        assert await _wait_state(uow, started.command_id) == "1:1"
        async with asyncio.timeout(10):
            while True:  # settled by billing when the gateway reports the change final
                if await _keys_of(uow, meter.id) == [(0, "retired"), (1, "active")]:
                    break
                await asyncio.sleep(0.05)
        reference = gateway.fleet.meter(meter.msisdn)
        assert (reference.key_id, reference.key) == (1, NEW_KEY)
        ping = await control.send_command(
            uow, OPERATOR, meter.id, mp.Ping(), datetime.now(UTC), keys=keys, idempotency_key=None
        )
        async with uow.connect() as conn:
            assert mp.peek_header((await get_command(conn, ping)).frame).key_id == 1
            stored = await conn.scalar(select(meters.c.key_id).where(meters.c.id == meter.id))
            wrapped = await conn.scalar(
                select(keys_table.c.wrapped_key).where(keys_table.c.meter_id == meter.id, keys_table.c.key_id == 1)
            )
        assert await _wait_state(uow, ping) == "1:1"
    assert stored == 1
    assert unwrap_from_storage(MASTER_KEY, wrapped) == NEW_KEY
    async with uow.connect() as conn:
        rows = (await conn.execute(select(audit_log).where(audit_log.c.action.like("meter.key%")))).all()
    assert [(r.action, r.before, r.after) for r in rows] == [
        ("meter.key_change", {"key_id": 0}, {"key_id": 0, "pending_key_id": 1, "command_id": started.command_id}),
        (
            "meter.key_activated",
            {"key_id": 0, "pending_key_id": 1, "command_id": started.command_id},
            {"key_id": 1, "retired_key_id": 0},
        ),
    ]


async def test_a_meter_that_does_not_answer_keeps_its_old_key(uow: UnitOfWork) -> None:
    keys = KeyRing(MASTER_KEY)
    _, meter = await new_subscriber(uow)
    assert meter is not None
    now = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    started = await meter_keys.change_meter_key(uow, OPERATOR, meter.id, now, keys=keys, idempotency_key="web:form-1")
    again = await meter_keys.change_meter_key(uow, OPERATOR, meter.id, now, keys=keys, idempotency_key="web:form-1")
    assert again == started  # a double submit is the same change
    assert await meter_keys.settle_key_changes(uow, now) == meter_keys.KeySettlement(0, 0)  # still open
    async with uow.begin() as conn:  # what the dispatcher writes when the acknowledgement never came
        await conn.execute(update(commands).where(commands.c.id == started.command_id).values(state="timed_out"))
    assert await meter_keys.settle_key_changes(uow, now) == meter_keys.KeySettlement(0, 1)
    assert await meter_keys.settle_key_changes(uow, now) == meter_keys.KeySettlement(0, 0)
    assert await _keys_of(uow, meter.id) == [(0, "active"), (1, "failed")]
    async with uow.connect() as conn:
        assert await conn.scalar(select(meters.c.key_id).where(meters.c.id == meter.id)) == 0
        failed = (await conn.execute(select(audit_log).where(audit_log.c.action == "meter.key_change_failed"))).one()
    assert failed.after == {"key_id": 0, "failed_key_id": 1, "state": "timed_out"}
    retry = await meter_keys.change_meter_key(uow, OPERATOR, meter.id, now, keys=keys)
    assert (retry.key_id, retry.pending_key_id) == (0, 2)  # a key id is never used twice


async def test_a_group_changes_keys_as_a_throttled_job(uow: UnitOfWork) -> None:
    keys = KeyRing(MASTER_KEY)
    ids = []
    for n in range(1, 6):
        _, meter = await new_subscriber(uow, f"64010010001000{n}", meter=n)
        assert meter is not None
        ids.append(meter.id)
    now = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    first = await meter_keys.change_meter_key(uow, OPERATOR, ids[0], now, keys=keys)  # under way: skipped
    job = await meter_keys.change_group_keys(
        uow, OPERATOR, control.Group(street=("64", "01", "001")), now, keys=keys, per_minute=2
    )
    assert (job.kind, job.total, job.done, job.skipped, job.status) == ("key_change", 5, 4, 1, "done")
    async with uow.connect() as conn:
        rows = (
            await conn.execute(
                select(commands.c.meter_id, commands.c.next_attempt_at, commands.c.idempotency_key)
                .where(commands.c.kind == "key_change", commands.c.id != first.command_id)
                .order_by(commands.c.id)
            )
        ).all()
    assert [r.meter_id for r in rows] == ids[1:]
    assert [r.next_attempt_at - now for r in rows] == [timedelta(0)] * 2 + [timedelta(minutes=1)] * 2  # 2 a minute
    assert rows[0].idempotency_key == f"job:{job.id}:meter:{ids[1]}"
    for meter_id in ids[1:]:
        assert await _keys_of(uow, meter_id) == [(0, "active"), (1, "pending")]
