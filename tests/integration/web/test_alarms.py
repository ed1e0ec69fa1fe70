"""Acknowledging alarms in the console and through the API: who and when on the alarm, an audit row with
it, once only; viewers see alarms but cannot acknowledge them (both databases)."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import func, insert, select

from store.schema.auth import audit_log
from store.schema.commands import alarms
from store.uow import UnitOfWork
from tests.integration.web.helpers import START, FixedClock, Seeded, login
from tests.integration.web.test_commands import _form_fields
from web import auth
from web.keys import CLOCK


async def _raise_alarms(uow: UnitOfWork, seeded: Seeded) -> list[int]:
    async with uow.begin() as conn:
        ids = []
        for n, (kind, severity) in enumerate((("tamper", "critical"), ("cover_open", "warning"))):
            ids.append(
                await conn.scalar(
                    insert(alarms)
                    .values(
                        meter_id=seeded.meter_ids[n],
                        kind=kind,
                        severity=severity,
                        raised_at=START - timedelta(hours=n + 1),
                        detail=f"{kind} reported by the meter",
                    )
                    .returning(alarms.c.id)
                )
            )
    return ids


async def _alarm(uow: UnitOfWork, alarm_id: int) -> tuple[object, object]:
    async with uow.connect() as conn:
        row = (await conn.execute(select(alarms).where(alarms.c.id == alarm_id))).one()
    return row.acknowledged_at, row.acknowledged_by


async def _audit(uow: UnitOfWork) -> list[dict[str, object]]:
    async with uow.connect() as conn:
        rows = await conn.execute(
            select(audit_log).where(audit_log.c.action == "alarm.acknowledge").order_by(audit_log.c.id)
        )
        return [dict(r) for r in rows.mappings()]


async def test_an_operator_acknowledges_an_alarm_in_the_console(
    client: TestClient, seeded: Seeded, uow: UnitOfWork, clock: FixedClock
) -> None:
    tamper, cover = await _raise_alarms(uow, seeded)
    await login(client, "viewer")
    page = await (await client.get("/console/alarms")).text()
    assert "tamper reported by the meter" in page
    assert 'data-testid="acknowledge"' not in page  # a viewer sees alarms but does not acknowledge them
    assert "Not acknowledged" in page
    assert (await client.post(f"/console/alarms/{tamper}/acknowledge", data={})).status == 403

    client.session.cookie_jar.clear()
    await login(client, "operator")
    page = await (await client.get("/console/alarms?open=true")).text()
    fields = _form_fields(page, f"/console/alarms/{tamper}/acknowledge")
    assert fields["open"] == "true"
    clock.advance(minutes=5)
    response = await client.post(
        f"/console/alarms/{tamper}/acknowledge",
        data={**fields, "note": "seal checked on site"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/console/alarms?open=true&ok=alarm_ack"
    page = await (await client.get(response.headers["Location"])).text()
    assert "Alarm acknowledged." in page
    assert f'data-alarm-id="{tamper}"' not in page  # no longer open
    assert f'data-alarm-id="{cover}"' in page
    page = await (await client.get("/console/alarms")).text()
    row = page[page.index(f'data-testid="alarm-ack-{tamper}"') :]
    row = row[: row.index("</td>")]
    assert 'data-testid="acknowledged"' in row
    assert "operator:operator" in row

    assert await _alarm(uow, tamper) == (clock.now, "operator:operator")
    assert await _alarm(uow, cover) == (None, None)
    [entry] = await _audit(uow)
    assert (entry["actor_kind"], entry["actor"], entry["target"], entry["at"]) == (
        "operator",
        "operator",
        f"alarm:{tamper}",
        clock.now,
    )
    assert entry["after"] == {
        "kind": "tamper",
        "severity": "critical",
        "meter_id": seeded.meter_ids[0],
        "note": "seal checked on site",
    }

    # the same form again (a double submit): nothing changes, no second audit row
    clock.advance(minutes=1)
    again = await client.post(f"/console/alarms/{tamper}/acknowledge", data=fields, allow_redirects=False)
    assert again.status == 303
    assert await _alarm(uow, tamper) == (clock.now - timedelta(minutes=1), "operator:operator")
    assert len(await _audit(uow)) == 1


async def test_an_integration_acknowledges_an_alarm_through_the_api(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    tamper, cover = await _raise_alarms(uow, seeded)
    async with uow.begin() as conn:
        _id, scada = await auth.create_api_key(conn, name="SCADA", role="operator", now=client.app[CLOCK]())
        _id, mdm = await auth.create_api_key(conn, name="MDM", role="viewer", now=client.app[CLOCK]())
    headers = {"Authorization": f"Bearer {scada}"}
    denied = await client.post(f"/api/v1/alarms/{cover}/acknowledge", headers={"Authorization": f"Bearer {mdm}"})
    assert denied.status == 403
    assert denied.content_type == "application/problem+json"

    too_long = await client.post(f"/api/v1/alarms/{cover}/acknowledge", json={"note": "x" * 201}, headers=headers)
    assert too_long.status == 422
    assert (await too_long.json())["field"] == "note"
    assert await _alarm(uow, cover) == (None, None)  # refused: nothing written

    response = await client.post(f"/api/v1/alarms/{cover}/acknowledge", json={"note": "cover closed"}, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["id"], body["kind"], body["already_acknowledged"]) == (cover, "cover_open", False)
    assert body["acknowledged_by"] == "api_key:SCADA"
    assert body["acknowledged_at"] == START.isoformat().replace("+00:00", "Z")
    assert body["meter_code"]

    again = await client.post(f"/api/v1/alarms/{cover}/acknowledge", headers=headers)  # no body: no note
    assert again.status == 200
    assert (await again.json())["already_acknowledged"] is True
    assert [(e["actor"], e["target"], e["after"]["note"]) for e in await _audit(uow)] == [  # type: ignore[index]
        ("SCADA", f"alarm:{cover}", "cover closed")
    ]

    listing = await (await client.get("/api/v1/alarms?open=true", headers=headers)).json()
    assert [a["id"] for a in listing["items"]] == [tamper]
    missing = await client.post("/api/v1/alarms/999999/acknowledge", headers=headers)
    assert missing.status == 404
    assert (await missing.json())["type"].endswith("/not-found")
    plain = await client.post(
        f"/api/v1/alarms/{tamper}/acknowledge", data="seen", headers={**headers, "Content-Type": "text/plain"}
    )
    assert plain.status == 415
    async with uow.connect() as conn:
        open_count = await conn.scalar(
            select(func.count()).select_from(alarms).where(alarms.c.acknowledged_at.is_(None))
        )
    assert open_count == 1
