"""Tariffs with versions, assignment queuing the tariff command to every affected meter with progress;
remote control of one meter and of a group (both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

import meter_protocol as mp
from billing import bulk, control, places, registry, tariffs
from billing.errors import InvalidField, InvalidTariff
from billing.rules.tariffs import Step, TariffBody, TariffKind
from gateway.keys import KeyRing
from gateway.outbox import get_command
from store.schema import auth
from store.schema import commands as C  # noqa: N812
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")
KEYS = KeyRing(MASTER_KEY)


async def test_versions_assignment_and_bulk_tariff_commands(uow: UnitOfWork) -> None:
    async with uow.begin() as conn:
        tid = await places.add_transformer(conn, OPERATOR, "TP-9", "TP 9", NOW)
    subs = []
    for i in range(1, 6):
        sub, _ = await new_subscriber(uow, f"6401001000{i}0001", meter=i, transformer_id=tid if i <= 3 else None)
        subs.append(sub)
    async with uow.begin() as conn:
        block = await tariffs.create_tariff(conn, OPERATOR, "RES-BLOCK", "Residential block", TariffKind.BLOCK, NOW)
        body = TariffBody(TariffKind.BLOCK, (Step(0, 150_000), Step(100_000, 250_000)), standing_charge_minor_per_day=5)
        assert await tariffs.add_version(conn, OPERATOR, block, body, NOW, NOW) == 1
        with pytest.raises(InvalidTariff):
            await tariffs.add_version(conn, OPERATOR, block, TariffBody.flat(1), NOW, NOW)
    job = await tariffs.assign_tariff(uow, OPERATOR, block, NOW, keys=KEYS, transformer_id=tid)
    assert (job.total, job.done, job.status, job.percent) == (3, 3, "done", 100)
    async with uow.connect() as conn:
        assigned = [(await registry.get_subscriber(conn, s.id)).tariff_id for s in subs]
        first = (await conn.execute(select(C.commands).order_by(C.commands.c.id))).first()
        history = await registry.subscriber_history(conn, subs[0].id)
    assert assigned == [block, block, block, None, None]
    assert first is not None
    assert first.kind == "set_tariff"
    assert history[-1].changes == {"tariff_id": [None, block]}
    # a new version goes to every meter on the tariff; running it again queues nothing twice
    async with uow.begin() as conn:
        await tariffs.add_version(conn, OPERATOR, block, body, NOW + timedelta(days=30), NOW)
        tariff = await tariffs.get_tariff(conn, block)
    assert tariff.in_force(NOW + timedelta(days=1)).version == 1  # type: ignore[union-attr]
    job2 = await tariffs.assign_tariff(uow, OPERATOR, block, NOW, keys=KEYS)
    job3 = await tariffs.assign_tariff(uow, OPERATOR, block, NOW, keys=KEYS)
    assert job2.total == job3.total == 3
    async with uow.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(C.commands))
        latest = await get_command(conn, int(await conn.scalar(select(func.max(C.commands.c.id)))))
        jobs = await bulk.recent_jobs(conn)
    assert count == 6
    assert latest.payload["version"] == tariff.version_ids[-1]
    assert latest.payload["effective_at"] > 0
    assert [j.status for j in jobs] == ["done", "done", "done"]


async def test_control_one_meter_and_a_group(uow: UnitOfWork) -> None:
    _, m1 = await new_subscriber(uow, "640100100010001", meter=1)
    _, m2 = await new_subscriber(uow, "640100100010002", meter=2)
    _, m3 = await new_subscriber(uow, "640100100020001", meter=3)
    assert m1
    assert m2
    assert m3
    with pytest.raises(InvalidField):
        await control.control_meter(uow, OPERATOR, m1.id, control.Control(control.Action.RELAY_OFF), NOW, keys=KEYS)
    off = control.Control(control.Action.RELAY_OFF, mp.RelayReason.MAINTENANCE, note="transformer works")
    cid = await control.control_meter(uow, OPERATOR, m1.id, off, NOW, keys=KEYS)
    limit = control.Control(control.Action.POWER_LIMIT, limit_w=3000)
    job = await control.control_group(
        uow, OPERATOR, control.Group(building=("64", "01", "001", "0001")), limit, NOW, keys=KEYS
    )
    sync = await control.control_group(
        uow,
        OPERATOR,
        control.Group(street=("64", "01", "001")),
        control.Control(control.Action.TIME_SYNC),
        NOW,
        keys=KEYS,
    )
    read = await control.control_meter(uow, OPERATOR, m3.id, control.Control(control.Action.READ), NOW, keys=KEYS)
    assert job.total == 2
    assert sync.total == 3
    async with uow.connect() as conn:
        view = await get_command(conn, cid)
        kinds = (await conn.scalars(select(C.commands.c.kind).order_by(C.commands.c.id))).all()
        audit_rows = (
            await conn.execute(
                select(auth.audit_log.c.action, auth.audit_log.c.after).where(
                    auth.audit_log.c.action == "meter.relay_off"
                )
            )
        ).all()
        read_view = await get_command(conn, read)
    assert view.kind == "relay_off"
    assert view.payload["reason"] == "MAINTENANCE"
    assert kinds == [
        "relay_off",
        "set_power_limit",
        "set_power_limit",
        "time_sync",
        "time_sync",
        "time_sync",
        "read_request",
    ]
    assert audit_rows[0].after["note"] == "transformer works"
    assert read_view.kind == "read_request"


async def test_direct_commands_are_sent_once_and_audited_credit_is_not(uow: UnitOfWork) -> None:
    _, meter = await new_subscriber(uow, "640100100010001", meter=1)
    assert meter
    off = mp.RelayOff(mp.RelayReason.OPERATOR)
    cid = await control.send_command(
        uow, OPERATOR, meter.id, off, NOW, keys=KEYS, idempotency_key="api:cis:1", note="unpaid"
    )
    again = await control.send_command(uow, OPERATOR, meter.id, off, NOW, keys=KEYS, idempotency_key="api:cis:1")
    assert again == cid
    ping = await control.send_command(uow, OPERATOR, meter.id, mp.Ping(), NOW, keys=KEYS, idempotency_key=None)
    with pytest.raises(InvalidField) as refused:
        await control.send_command(
            uow, OPERATOR, meter.id, mp.TopUp(transfer_id=1, amount_minor=100), NOW, keys=KEYS, idempotency_key=None
        )
    assert refused.value.field == "command"
    async with uow.connect() as conn:
        sent = (await conn.execute(select(C.commands.c.id, C.commands.c.kind).order_by(C.commands.c.id))).all()
        audited = (
            await conn.execute(
                select(auth.audit_log.c.action, auth.audit_log.c.after)
                .where(auth.audit_log.c.action.like("command.%"))
                .order_by(auth.audit_log.c.id)
            )
        ).all()
    assert [tuple(r) for r in sent] == [(cid, "relay_off"), (ping, "ping")]
    assert [(a.action, a.after["command_id"]) for a in audited] == [("command.relay_off", cid), ("command.ping", ping)]
    assert audited[0].after["note"] == "unpaid"
