"""Subscribers, reference tables, search, history; meters install / replace / archive (both databases)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from billing import ledger, meter_registry, places, registry
from billing.errors import Conflict, InvalidField, InvalidSubscriberCode
from store.crypto import unwrap_from_storage
from store.schema import auth
from store.schema import registry as R  # noqa: N812
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, meter_code, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")


async def test_create_subscriber_with_every_field_and_an_account(uow: UnitOfWork) -> None:
    sub, meter = await new_subscriber(
        uow,
        father_name="Ion",
        email="ana@example.org",
        contract_number="C-1",
        identity_document="A123",
        family_size=4,
        rooms=3,
        registered_on=date(2020, 1, 1),
        old_code="OLD-7",
        normative_wh_month=150_000,
    )
    assert sub.code == "640100100010001"
    assert sub.building == "0001"
    assert sub.apartment == "0001"
    assert sub.family_size == 4
    assert sub.registered_on == date(2020, 1, 1)
    assert sub.status == "active"
    assert sub.address == "Balti, Independentei 1, ap. 1"
    assert meter is not None
    assert meter.subscriber_id == sub.id
    async with uow.connect() as conn:
        assert (await ledger.balance(conn, sub.account_id)).minor == 0
        audit_actions = (await conn.scalars(select(auth.audit_log.c.action))).all()
    assert "subscriber.create" in audit_actions
    assert "meter.install" in audit_actions


async def test_bad_input_is_refused_with_a_reason(uow: UnitOfWork) -> None:
    async with uow.begin() as conn:
        with pytest.raises(InvalidSubscriberCode):
            await registry.create_subscriber(conn, OPERATOR, "64010010001", {"name": "X"}, currency="USD", now=NOW)
        with pytest.raises(InvalidField) as unknown_street:
            await registry.create_subscriber(conn, OPERATOR, "640100900010001", {"name": "X"}, currency="USD", now=NOW)
        assert unknown_street.value.field == "code"
        assert "street 6401009" in unknown_street.value.detail
        with pytest.raises(InvalidField) as err:
            await registry.create_subscriber(
                conn, OPERATOR, "640100100010001", {"name": "X", "email": "nope"}, currency="USD", now=NOW
            )
        assert err.value.field == "email"
    await new_subscriber(uow, meter=None)
    async with uow.begin() as conn:
        with pytest.raises(Conflict):
            await registry.create_subscriber(conn, OPERATOR, "640100100010001", {"name": "Y"}, currency="USD", now=NOW)


async def test_every_change_has_history_and_audit(uow: UnitOfWork) -> None:
    sub, _ = await new_subscriber(uow, meter=None)
    later = NOW + timedelta(hours=1)
    async with uow.begin() as conn:
        updated = await registry.update_subscriber(
            conn, OPERATOR, sub.id, {"phone": "373 600 00009", "status": "suspended"}, later
        )
        same = await registry.update_subscriber(conn, OPERATOR, sub.id, {"status": "suspended"}, later)
    assert updated.phone == "37360000009"
    assert same.status == "suspended"
    async with uow.connect() as conn:
        history = await registry.subscriber_history(conn, sub.id)
    assert len(history) == 2  # created, then one change (the no-op wrote nothing)
    assert history[1].changes == {"phone": ["37360000001", "37360000009"], "status": ["active", "suspended"]}
    assert history[1].changed_by == "operator:alice"


async def test_search_by_code_prefix_name_address_phone_and_meter(uow: UnitOfWork) -> None:
    await new_subscriber(uow, "640100100010001", meter=1)
    await new_subscriber(uow, "640100200020003", meter=2, name="Ivan Petrov", phone="37360000002")
    async with uow.connect() as conn:

        async def codes(q: str) -> list[str]:
            return [s.code for s in await registry.search_subscribers(conn, q)]

        assert await codes("6401002") == ["640100200020003"]
        assert await codes("64-01-001") == ["640100100010001"]
        assert await codes("petrov") == ["640100200020003"]
        assert await codes("stefan") == ["640100200020003"]
        assert await codes("60000001") == ["640100100010001"]
        assert await codes(meter_code(2)) == ["640100200020003"]
        assert await codes("") == ["640100100010001", "640100200020003"]
        assert [s.code for s in await registry.search_subscribers(conn, "", after_code="640100100010001")] == [
            "640100200020003"
        ]


async def test_meter_replace_moves_the_subscriber_and_gives_a_fresh_key(uow: UnitOfWork) -> None:
    async with uow.begin() as conn:
        tid = await places.add_transformer(conn, OPERATOR, "TP-1", "TP 1", NOW)
    sub, old = await new_subscriber(uow, transformer_id=tid)
    assert old is not None
    async with uow.begin() as conn:
        new = await meter_registry.replace_meter(
            conn,
            OPERATOR,
            old.id,
            meter_registry.NewMeter(code=meter_code(9), msisdn="37369000009"),
            master_key=MASTER_KEY,
            now=NOW,
            carried_credit_minor=750,
        )
    async with uow.connect() as conn:
        archived = await meter_registry.get_meter(conn, old.id)
        keys = {
            r.meter_id: (r.status, unwrap_from_storage(MASTER_KEY, r.wrapped_key))
            for r in await conn.execute(select(R.meter_keys))
        }
        balances = await ledger.balances(conn, sub.account_id)
        active = await meter_registry.active_meter(conn, sub.id)
        history = await meter_registry.meter_history(conn, old.id)
    assert archived.status == "archived"
    assert archived.replaced_by_id == new.id
    assert new.subscriber_id == sub.id
    assert new.transformer_id == tid
    assert active is not None
    assert active.id == new.id
    assert keys[old.id][0] == "retired"
    assert keys[new.id][0] == "active"
    assert keys[old.id][1] != keys[new.id][1]
    assert balances.wallet.minor == 750  # the old meter's credit waits to be sent to the new one
    assert [h["event"] for h in history] == ["installed", "archived", "replaced"]


async def test_meter_codes_are_checked(uow: UnitOfWork) -> None:
    sub, _ = await new_subscriber(uow, meter=None)
    bad = meter_code(3)[:-1] + str((int(meter_code(3)[-1]) + 1) % 10)
    async with uow.begin() as conn:
        with pytest.raises(InvalidField) as err:
            await meter_registry.install_meter(
                conn,
                OPERATOR,
                sub.id,
                meter_registry.NewMeter(code=bad, msisdn="37369000003"),
                master_key=MASTER_KEY,
                now=NOW,
            )
    assert "check digit" in err.value.detail


async def test_groups_by_transformer_street_and_building(uow: UnitOfWork) -> None:
    async with uow.begin() as conn:
        tid = await places.add_transformer(conn, OPERATOR, "TP-2", "TP 2", NOW)
    _, m1 = await new_subscriber(uow, "640100100010001", meter=1, transformer_id=tid)
    _, m2 = await new_subscriber(uow, "640100100010002", meter=2)
    _, m3 = await new_subscriber(uow, "640100100020001", meter=3, transformer_id=tid)
    assert m1
    assert m2
    assert m3
    async with uow.connect() as conn:
        assert await meter_registry.meters_in_group(conn, transformer_id=tid) == [m1.id, m3.id]
        assert await meter_registry.meters_in_group(conn, street=("64", "01", "001")) == [m1.id, m2.id, m3.id]
        assert await meter_registry.meters_in_group(conn, building=("64", "01", "001", "0001")) == [m1.id, m2.id]
        assert [t["code"] for t in await places.list_transformers(conn)] == ["TP-2"]
        assert [r["name"] for r in await places.list_regions(conn)] == ["Nord"]
        assert [s["name"] for s in await places.list_settlements(conn, "64")] == ["Balti"]
        assert len(await places.list_streets(conn)) == 2
