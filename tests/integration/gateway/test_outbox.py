"""The outbox on both databases: counters, sealing, idempotency, bulk, dependencies, errors, views."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

import meter_protocol as mp
from gateway.errors import CannotCancel, CommandNotFound, MeterKeyMissing, NotACommand, UnknownDependency, UnknownMeter
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, cancel_command, enqueue_command, enqueue_commands, get_command
from gateway.states import CommandState
from store.schema.commands import command_history, commands
from store.schema.registry import meter_keys
from tests.integration.gateway.outbox_fixtures import MASTER_KEY, add_meters, next_counters

NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)


def top_up(transfer_id: int, amount_minor: int = 5000) -> mp.TopUp:
    return mp.TopUp(transfer_id=transfer_id, amount_minor=amount_minor)


async def test_a_command_is_sealed_with_the_next_counter_and_starts_at_0_0(engine: AsyncEngine) -> None:
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        (meter,) = await add_meters(conn, 1, NOW)
        first = await enqueue_command(conn, keys, CommandRequest(meter.id, top_up(1), "system:topup"), NOW)
        second = await enqueue_command(
            conn, keys, CommandRequest(meter.id, mp.RelayOn(mp.RelayReason.CREDIT), "operator:alice"), NOW
        )
        assert (await next_counters(conn, [meter.id]))[meter.id] == 3
    async with engine.connect() as conn:
        view = await get_command(conn, first)
        other = await get_command(conn, second)
    assert (view.state, view.counter, view.kind, view.attempts) == (CommandState.SENDING, 1, "top_up", 0)
    assert (other.counter, other.kind, other.payload) == (2, "relay_on", {"reason": "CREDIT"})
    assert view.payload == {"transfer_id": 1, "amount_minor": 5000}
    decoded = mp.decode_frame(view.frame, key=meter.key, meter_code=meter.code, direction=mp.Direction.DOWNLINK)
    assert decoded.message == top_up(1)
    assert decoded.header.counter == 1
    assert [(h.from_state, h.to_state, h.source) for h in view.history] == [(None, "0:0", "outbox")]
    assert (view.history[0].at, view.history[0].detail) == (NOW, "counter 1 by system:topup")
    assert view.next_attempt_at == NOW
    assert view.parts == ()


async def test_the_same_idempotency_key_returns_the_first_command(engine: AsyncEngine) -> None:
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        (meter,) = await add_meters(conn, 1, NOW)
        request = CommandRequest(meter.id, top_up(7), "system:topup", idempotency_key="payment:pi_1")
        first = await enqueue_command(conn, keys, request, NOW)
    async with engine.begin() as conn:
        again = await enqueue_command(conn, keys, request, NOW)
        many = await enqueue_commands(conn, keys, [request, request], NOW)
        assert await conn.scalar(select(func.count()).select_from(commands)) == 1
        assert await conn.scalar(select(func.count()).select_from(command_history)) == 1
    assert again == first
    assert many == [first, first]


async def test_keys_known_new_are_not_looked_up_and_a_key_met_again_fails_on_its_index(engine: AsyncEngine) -> None:
    """`keys_are_new`: no lookup of existing keys, and a meter key unwrapped once is not read again; should
    the key exist all the same, the insert fails and the transaction rolls back (no counter used)."""
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        (meter,) = await add_meters(conn, 1, NOW)
        request = CommandRequest(meter.id, top_up(7), "system:topup", idempotency_key="topup:stripe:cs_1")
        (first,) = await enqueue_commands(conn, keys, [request], NOW, keys_are_new=True)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements.append(sql)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await enqueue_commands(conn, keys, [request], NOW, keys_are_new=True)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    lookups = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "idempotency_key" in s]
    assert statements
    assert not lookups
    assert not [s for s in statements if "meter_keys" in s]
    async with engine.connect() as conn:
        assert (await next_counters(conn, [meter.id]))[meter.id] == 2
        assert (await conn.execute(select(commands.c.id))).scalars().all() == [first]


async def test_bulk_enqueue_keeps_request_order_and_per_meter_counters(engine: AsyncEngine) -> None:
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        fleet = await add_meters(conn, 600, NOW)
        requests = [
            CommandRequest(m.id, mp.RelayOff(mp.RelayReason.ARREARS), "operator:bob", idempotency_key=f"off:{m.id}")
            for m in fleet
        ] + [CommandRequest(m.id, top_up(1, 100 + i), "system:topup") for i, m in enumerate(fleet)]
        requests.append(
            CommandRequest(fleet[0].id, top_up(2), "system:topup", idempotency_key="off:" + str(fleet[1].id))
        )
        ids = await enqueue_commands(conn, keys, requests, NOW)
        assert len(ids) == len(requests)
        assert ids[-1] == ids[1]  # the repeated key inside one call gives the first command
        assert len(set(ids)) == 1200
        rows = (
            await conn.execute(select(commands.c.id, commands.c.meter_id, commands.c.counter, commands.c.frame))
        ).all()
        assert await conn.scalar(select(func.count()).select_from(command_history)) == 1200
        counters = await next_counters(conn, [m.id for m in fleet])
    by_id = {r.id: r for r in rows}
    by_meter = {m.id: m for m in fleet}
    for i, meter in enumerate(fleet):
        off, credit = by_id[ids[i]], by_id[ids[600 + i]]
        assert (off.meter_id, off.counter, credit.counter) == (meter.id, 1, 2)
        assert counters[meter.id] == 3
    sample = by_id[ids[600 + 17]]
    decoded = mp.decode_frame(sample.frame, key=by_meter[sample.meter_id].key)
    assert decoded.message == top_up(1, 117)


async def test_concurrent_bulk_enqueues_over_the_same_meters_neither_deadlock_nor_share_a_counter(
    engine: AsyncEngine,
) -> None:
    """Four transactions at once, each sealing a command for the same 40 meters in its own order: the meters'
    rows are locked in id order whatever the order asked, so all commit, and each meter's counters are 1..4."""
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        fleet = await add_meters(conn, 40, NOW)

    async def enqueue_all(order: list[int]) -> list[int]:
        async with engine.begin() as conn:
            ids = await enqueue_commands(
                conn, keys, [CommandRequest(fleet[i].id, top_up(1), "system:topup") for i in order], NOW
            )
            await asyncio.sleep(0.01)  # the locks are held while the others ask for them
            return ids

    forward = list(range(40))
    orders = [forward, forward[::-1], forward[1::2] + forward[::2], forward[20:] + forward[:20]]
    await asyncio.gather(*(enqueue_all(order) for order in orders))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(commands.c.meter_id, commands.c.counter))).all()
        counters = await next_counters(conn, [m.id for m in fleet])
    per_meter: dict[int, list[int]] = {}
    for meter_id, counter in rows:
        per_meter.setdefault(meter_id, []).append(counter)
    assert {m: sorted(c) for m, c in per_meter.items()} == {m.id: [1, 2, 3, 4] for m in fleet}
    assert set(counters.values()) == {5}


async def test_a_failed_transaction_leaves_no_command_and_no_used_counter(engine: AsyncEngine) -> None:
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        (meter,) = await add_meters(conn, 1, NOW)

    class AbortError(Exception):
        pass

    async def enqueue_then_fail() -> None:
        async with engine.begin() as conn:
            await enqueue_command(conn, keys, CommandRequest(meter.id, top_up(1), "system:topup"), NOW)
            raise AbortError

    with pytest.raises(AbortError):
        await enqueue_then_fail()
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(commands)) == 0
        assert (await next_counters(conn, [meter.id]))[meter.id] == 1


async def test_bad_requests_raise_typed_errors(engine: AsyncEngine) -> None:
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        meter, keyless = await add_meters(conn, 2, NOW)
        await conn.execute(meter_keys.delete().where(meter_keys.c.meter_id == keyless.id))
    ack = mp.Ack(acked_counter=1, acked_type=1, result=mp.AckResult.OK)
    cases = [
        (CommandRequest(meter.id, ack, "x"), NotACommand),  # type: ignore[arg-type]
        (CommandRequest(999_999, top_up(1), "x"), UnknownMeter),
        (CommandRequest(keyless.id, top_up(1), "x"), MeterKeyMissing),
        (CommandRequest(meter.id, top_up(1), "x", depends_on_id=424242), UnknownDependency),
    ]

    async def enqueue(ring: KeyRing, request: CommandRequest) -> None:
        async with engine.begin() as conn:
            await enqueue_command(conn, ring, request, NOW)

    for request, error in cases:
        with pytest.raises(error):
            await enqueue(keys, request)
    with pytest.raises(MeterKeyMissing):
        await enqueue(KeyRing(bytes(32)), CommandRequest(meter.id, top_up(1), "x"))
    async with engine.begin() as conn:
        await conn.execute(update(commands).values(state="x"))  # nothing was written
        assert await conn.scalar(select(func.count()).select_from(commands)) == 0
        with pytest.raises(CommandNotFound):
            await get_command(conn, 123)


async def test_xml_profile_meters_get_xml_frames_and_dependencies_are_kept(engine: AsyncEngine) -> None:
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        (meter,) = await add_meters(conn, 1, NOW, profile="xml")
        credit = await enqueue_command(conn, keys, CommandRequest(meter.id, top_up(3), "system:topup"), NOW)
        relay = await enqueue_command(
            conn,
            keys,
            CommandRequest(meter.id, mp.RelayOn(mp.RelayReason.CREDIT), "system:topup", depends_on_id=credit),
            NOW,
        )
        view = await get_command(conn, relay)
        credit_view = await get_command(conn, credit)
    assert view.depends_on_id == credit
    assert mp.peek_header(credit_view.frame).profile is mp.Profile.XML
    assert mp.decode_frame(credit_view.frame, key=meter.key).message == top_up(3)


async def test_only_an_unsent_command_can_be_cancelled(engine: AsyncEngine) -> None:
    keys = KeyRing(MASTER_KEY)
    async with engine.begin() as conn:
        (meter,) = await add_meters(conn, 1, NOW)
        first = await enqueue_command(conn, keys, CommandRequest(meter.id, top_up(1), "x"), NOW)
        second = await enqueue_command(conn, keys, CommandRequest(meter.id, top_up(2), "x"), NOW)
        await conn.execute(update(commands).where(commands.c.id == second).values(state="0:1"))
        await cancel_command(conn, first, NOW, by="operator:alice", reason="wrong amount")
        with pytest.raises(CannotCancel):
            await cancel_command(conn, second, NOW, by="operator:alice", reason="too late")
        with pytest.raises(CannotCancel):
            await cancel_command(conn, first, NOW, by="operator:alice", reason="twice")
        view = await get_command(conn, first)
    assert view.state is CommandState.CANCELLED
    assert view.final_at == NOW
    assert [h.to_state for h in view.history] == ["0:0", "cancelled"]
