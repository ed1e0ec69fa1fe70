"""The registry's doors: meters installed, replaced and archived from the API and the console (history on
the meter card), transformers with their balance meters (so the monthly losses job has input), the
holiday calendar, and the subscriber form; every change audited with before and after."""

from __future__ import annotations

import re
from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from billing.losses import record_transformer_balances
from meter_protocol import meter_code_with_check_digit
from store.schema.auth import audit_log
from store.schema.ledger import ledger_entries
from store.schema.registry import holidays, meters, subscribers
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, form_token, login
from web import auth
from web.keys import CLOCK


async def api_key(uow: UnitOfWork, client: TestClient, role: str) -> dict[str, str]:
    async with uow.begin() as conn:
        _id, raw = await auth.create_api_key(conn, name=f"key-{role}", role=role, now=client.app[CLOCK]())
    return {"Authorization": f"Bearer {raw}"}


async def audit_rows(uow: UnitOfWork, action: str) -> list[dict[str, object]]:
    async with uow.connect() as conn:
        rows = await conn.execute(select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id))
        return [dict(r) for r in rows.mappings()]


def code(serial: int) -> str:
    return meter_code_with_check_digit(f"8811{serial:015d}")


async def test_meters_are_installed_replaced_and_archived_through_the_api(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    headers = await api_key(uow, client, "operator")
    sid = seeded.subscriber_ids[0]
    body = {"code": code(1), "msisdn": "37369111111", "subscriber_id": sid, "key_hex": "00" * 16, "make": "Acme"}
    response = await client.post("/api/v1/meters", json=body, headers=headers)
    assert response.status == 201, await response.text()
    installed = await response.json()
    assert (installed["code"], installed["subscriber"]["id"], installed["status"]) == (code(1), sid, "active")
    assert [h["event"] for h in installed["history"]] == ["installed"]
    assert response.headers["Location"] == f"/api/v1/meters/{installed['id']}"
    assert (await client.post("/api/v1/meters", json=body, headers=headers)).status == 409
    bad = await client.post("/api/v1/meters", json={**body, "code": "123"}, headers=headers)
    assert bad.status == 422
    assert (
        await client.post("/api/v1/meters", json={**body, "code": code(9), "key_hex": "zz"}, headers=headers)
    ).status == 422

    response = await client.post(
        f"/api/v1/meters/{installed['id']}/replace",
        json={"code": code(2), "msisdn": "37369222222", "carried_credit_minor": 350},
        headers=headers,
    )
    assert response.status == 201, await response.text()
    fresh = await response.json()
    assert fresh["subscriber"]["id"] == sid
    assert fresh["replaces"]["code"] == code(1)
    old = await (await client.get(f"/api/v1/meters/{installed['id']}/history", headers=headers)).json()
    assert [h["event"] for h in old["items"]] == ["installed", "archived", "replaced"]
    async with uow.connect() as conn:
        carried = await conn.scalar(
            select(ledger_entries.c.amount_minor).where(
                ledger_entries.c.idempotency_key == f"replace:{installed['id']}:carried"
            )
        )
    assert carried == 350
    (replaced,) = await audit_rows(uow, "meter.replace")
    assert replaced["before"] == {"meter": code(1), "status": "active"}
    assert replaced["after"] == {"new_meter": code(2), "carried_credit_minor": 350}
    assert replaced["actor_kind"] == "api_key"

    response = await client.post(
        f"/api/v1/meters/{fresh['id']}/archive", json={"reason": "house demolished"}, headers=headers
    )
    assert response.status == 200
    assert (await response.json())["status"] == "archived"
    again = await client.post(f"/api/v1/meters/{fresh['id']}/archive", json={"reason": "twice"}, headers=headers)
    assert again.status == 409
    assert (await client.post(f"/api/v1/meters/{fresh['id']}/archive", json={}, headers=headers)).status == 422
    archived = [r for r in await audit_rows(uow, "meter.archive") if r["target"] == f"meter:{code(2)}"]
    assert archived[0]["before"] == {"status": "active"}
    assert archived[0]["after"] == {"status": "archived", "reason": "house demolished"}
    viewer = await api_key(uow, client, "viewer")
    assert (await client.post("/api/v1/meters", json=body, headers=viewer)).status == 403


async def test_a_transformer_with_its_balance_meter_feeds_the_losses_job(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    headers = await api_key(uow, client, "admin")
    response = await client.post(
        "/api/v1/transformers", json={"code": "TP-7", "name": "TP-7 Centru", "feeder": "F-1"}, headers=headers
    )
    assert response.status == 201, await response.text()
    tp = await response.json()
    assert (tp["meters"], tp["balance_meters"]) == (0, [])
    assert (
        await client.post("/api/v1/transformers", json={"code": "TP-7", "name": "x"}, headers=headers)
    ).status == 409
    response = await client.post(
        "/api/v1/meters", json={"code": code(5), "msisdn": "37369555555", "is_balance_meter": True}, headers=headers
    )
    assert response.status == 201, await response.text()
    balance = await response.json()
    response = await client.post(
        f"/api/v1/transformers/{tp['id']}/meters",
        json={"meter_ids": seeded.meter_ids, "balance_meter_id": balance["id"]},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    attached = await response.json()
    assert (attached["changed"], attached["meters"]) == (3, 2)
    assert attached["balance_meters"] == [{"id": balance["id"], "code": code(5)}]
    refused = await client.post(
        f"/api/v1/transformers/{tp['id']}/meters", json={"balance_meter_id": seeded.meter_ids[0]}, headers=headers
    )
    assert refused.status == 422  # a subscriber's meter is not a balance meter
    (row,) = await audit_rows(uow, "transformer.attach")
    assert row["target"] == "transformer:TP-7"
    assert row["after"][code(5)] == {"transformer_id": tp["id"], "is_balance_meter": True}
    assert row["before"][code(5)] == {"transformer_id": None, "is_balance_meter": True}
    history = await (await client.get(f"/api/v1/meters/{seeded.meter_ids[0]}/history", headers=headers)).json()
    assert history["items"][-1]["detail"] == {"transformer_id": [None, tp["id"]]}
    now = client.app[CLOCK]()
    results = await record_transformer_balances(uow, now - timedelta(days=30), now, now)
    assert tp["id"] in results  # the monthly job now has a transformer with a balance meter to compare
    listing = await (await client.get("/api/v1/transformers", headers=headers)).json()
    assert [t["code"] for t in listing["items"]] == ["TP-7"]


async def test_the_holiday_calendar(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    headers = await api_key(uow, client, "operator")
    response = await client.put("/api/v1/holidays/2026-03-08", json={"name": "Women's Day"}, headers=headers)
    assert response.status == 200, await response.text()
    assert await response.json() == {"day": "2026-03-08", "name": "Women's Day"}
    await client.put("/api/v1/holidays/2026-03-08", json={"name": "8 March"}, headers=headers)
    listing = await (await client.get("/api/v1/holidays", headers=headers)).json()
    assert listing["items"] == [{"day": "2026-03-08", "name": "8 March"}]
    assert (await client.put("/api/v1/holidays/2026-13-01", json={"name": "x"}, headers=headers)).status == 422
    assert (await client.delete("/api/v1/holidays/2026-03-08", headers=headers)).status == 204
    assert (await client.delete("/api/v1/holidays/2026-03-08", headers=headers)).status == 404
    rows = await audit_rows(uow, "holiday.set")
    assert [(r["before"], r["after"]) for r in rows] == [
        (None, {"name": "Women's Day"}),
        ({"name": "Women's Day"}, {"name": "8 March"}),
    ]
    (removed,) = await audit_rows(uow, "holiday.remove")
    assert removed["before"] == {"name": "8 March"}

    csrf = await login(client, "operator")
    response = await client.post(
        "/console/holidays", data={"csrf_token": csrf, "day": "2026-05-01", "name": "Labour Day"}, allow_redirects=False
    )
    assert response.headers["Location"] == "/console/holidays?ok=holiday_set"
    page = await (await client.get("/console/holidays")).text()
    assert "Labour Day" in page
    async with uow.connect() as conn:
        assert (await conn.execute(select(holidays.c.name))).scalars().all() == ["Labour Day"]


def _hidden(html: str, action: str) -> dict[str, str]:
    form = html[html.index(f'action="{action}"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def test_the_console_installs_and_replaces_a_meter_and_shows_its_history(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    await login(client, "operator")
    sid = seeded.subscriber_ids[1]
    card = await (await client.get(f"/console/subscribers/{sid}")).text()
    assert f'href="/console/meters/new?subscriber_id={sid}"' in card
    form = await (await client.get(f"/console/meters/new?subscriber_id={sid}")).text()
    response = await client.post(
        "/console/meters",
        data={**_hidden(form, "/console/meters"), "code": code(3), "msisdn": "37369333333", "phases": "3"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    meter_id = int(location.split("/")[3].split("?")[0])
    page = await (await client.get(location)).text()
    assert "Meter installed." in page
    assert code(3) in page
    form = await (await client.get(f"/console/meters/{meter_id}/replace")).text()
    response = await client.post(
        f"/console/meters/{meter_id}/replace",
        data={**_hidden(form, f"/console/meters/{meter_id}/replace"), "code": code(4), "msisdn": "37369444444"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    page = await (await client.get(response.headers["Location"])).text()
    assert "Meter replaced" in page
    assert f'data-testid="replaces">{code(3)}' in page
    old = await (await client.get(f"/console/meters/{meter_id}")).text()
    assert f'data-testid="replaced-by">{code(4)}' in old
    history = old[old.index('data-testid="meter-history"') :]
    assert history.index("installed") < history.index("archived") < history.index("replaced")
    async with uow.connect() as conn:
        statuses = dict((await conn.execute(select(meters.c.code, meters.c.status))).all())
    assert (statuses[code(3)], statuses[code(4)]) == ("archived", "active")
    await client.post("/logout", data={"csrf_token": await form_token(client, "/console/subscribers")})
    await login(client, "viewer")
    page = await (await client.get(f"/console/meters/{meter_id}")).text()
    assert "Replace this meter" not in page


async def test_subscribers_are_created_and_edited_in_the_console_and_found_by_town(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    await login(client, "operator")
    form = await (await client.get("/console/subscribers/new")).text()
    response = await client.post(
        "/console/subscribers",
        data={
            **_hidden(form, "/console/subscribers"),
            "street": "6401001",
            "building": "7",
            "apartment": "12",
            "name": "Dan Lungu",
            "phone": "+373 600 00009",
            "language": "ro",
        },
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    sid = int(response.headers["Location"].split("/")[3].split("?")[0])
    async with uow.connect() as conn:
        row = (await conn.execute(select(subscribers).where(subscribers.c.id == sid))).mappings().one()
    assert (row["code"], row["phone"], row["language"]) == ("640100100070012", "+37360000009", "ro")
    form = await (await client.get(f"/console/subscribers/{sid}/edit")).text()
    assert 'value="Dan Lungu"' in form
    response = await client.post(
        f"/console/subscribers/{sid}/edit",
        data={**_hidden(form, f"/console/subscribers/{sid}/edit"), "name": "Dan Lungu", "email": "dan@example.org"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == f"/console/subscribers/{sid}?ok=subscriber_saved"
    (update,) = await audit_rows(uow, "subscriber.update")
    assert update["after"]["email"] == "dan@example.org"
    assert update["before"]["email"] is None
    bad = await client.post(
        f"/console/subscribers/{sid}/edit",
        data={**_hidden(form, f"/console/subscribers/{sid}/edit"), "name": "Dan", "email": "not-an-address"},
        allow_redirects=False,
    )
    assert bad.status == 422
    page = await (await client.get("/console/subscribers?q=balti")).text()
    assert page.count('data-testid="subscriber-link"') == 3  # every subscriber lives in Balti
