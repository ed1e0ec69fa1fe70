"""Console pages: lists, the command's history, reports with charts and CSV/XLSX export, the audit log
(viewable and exportable by auditors), operators and API keys."""

from __future__ import annotations

import csv
import io
import re

from aiohttp.test_utils import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from store.schema.auth import audit_log
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, csrf_from, login
from tests.integration.web.test_commands import _form_fields
from web.keys import CLOCK


async def _top_up(client: TestClient, seeded: Seeded, amount: str) -> None:
    sid = seeded.subscriber_ids[1]
    fields = _form_fields(
        await (await client.get(f"/console/subscribers/{sid}")).text(), f"/console/subscribers/{sid}/topup"
    )
    response = await client.post(
        f"/console/subscribers/{sid}/topup", data={**fields, "amount": amount}, allow_redirects=False
    )
    assert response.status == 303


async def test_lists_and_reports(client: TestClient, seeded: Seeded) -> None:
    await login(client, "admin")
    await _top_up(client, seeded, "7.25")
    for path in (
        "/console/communication",
        "/console/wrong-sms",
        "/console/alarms",
        "/console/arrears",
        "/console/reports/payments",
        "/console/reports/arrears",
        "/console/reports/losses",
        "/console/reports/communication",
        "/console/commands/1",
    ):
        response = await client.get(path)
        assert response.status == 200, path
    page = await (await client.get("/console/reports/revenue?days=7")).text()
    assert 'data-testid="report-chart"' in page  # an inline SVG chart
    assert "$7.25" in page
    communication = await (await client.get("/console/communication")).text()
    assert "top up" in communication  # the command kind, readable

    response = await client.get("/console/reports/revenue.csv?days=7")
    assert response.status == 200
    assert response.headers["Content-Disposition"].startswith('attachment; filename="revenue-')
    rows = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert rows[0] == ["Day", "Top-ups", "Taken", "Debt repaid", "Reversed", "Net"]
    assert ["2026-01-15", "1", "7.25", "0.00", "0.00", "7.25"] in rows

    response = await client.get("/console/reports/revenue.xlsx?days=7")
    book = load_workbook(io.BytesIO(await response.read()))
    values = [[c.value for c in row] for row in book.active.iter_rows()]
    assert values[0][0] == "Day"
    assert any(row[0] == "2026-01-15" and str(row[2]) == "7.25" for row in values)
    assert (await client.get("/console/reports/nothing")).status == 404
    assert (await client.get("/console/reports/revenue.docx")).status == 422


async def test_auditors_read_and_export_the_audit_log(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    await login(client, "cashier")
    await _top_up(client, seeded, "3")
    client.session.cookie_jar.clear()
    await login(client, "auditor")
    page = await (await client.get("/console/audit?action=topup.cash")).text()
    assert "topup" in page
    response = await client.get("/console/audit.csv")
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    actions = {r["action"] for r in rows}
    assert {"login"} <= actions
    assert any(r["actor"] == "cashier" and r["action"] != "login" for r in rows)
    assert (await client.get("/console/audit.xlsx")).status == 200
    async with uow.connect() as conn:
        exports = (await conn.execute(select(audit_log).where(audit_log.c.action == "audit.export"))).mappings().all()
    assert [e["actor"] for e in exports] == ["auditor", "auditor"]  # reading the log out is itself logged
    assert (await client.get("/console/subscribers")).status == 200  # read-only everywhere else
    assert (await client.get("/console/operators")).status == 403


async def test_admin_manages_operators_and_api_keys(client: TestClient, seeded: Seeded) -> None:
    await login(client, "admin")
    csrf = csrf_from(await (await client.get("/console/operators")).text())
    response = await client.post(
        "/console/operators",
        data={"csrf_token": csrf, "username": "dora", "display_name": "Dora", "role": "cashier", "password": "short"},
    )
    assert response.status == 422
    response = await client.post(
        "/console/operators",
        data={
            "csrf_token": csrf,
            "username": "dora",
            "display_name": "Dora",
            "role": "cashier",
            "password": "a long enough password",
        },
        allow_redirects=False,
    )
    assert response.status == 303
    page = await (await client.get("/console/api-keys")).text()
    response = await client.post(
        "/console/api-keys", data={"csrf_token": csrf_from(page), "name": "CIS", "role": "viewer"}
    )
    assert response.status == 200
    key = re.search(r'data-testid="new-key">([^<]+)<', await response.text()).group(1)  # type: ignore[union-attr]
    assert (await client.get("/api/v1/meters", headers={"Authorization": f"Bearer {key}"})).status == 200
    key_id = re.search(r"/console/api-keys/(\d+)/revoke", await (await client.get("/console/api-keys")).text()).group(1)  # type: ignore[union-attr]
    response = await client.post(f"/console/api-keys/{key_id}/revoke", data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 303
    assert (await client.get("/api/v1/meters", headers={"Authorization": f"Bearer {key}"})).status == 401


async def test_operator_changes_the_tariff_and_the_api_reads_reports(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    from billing.rules.tariffs import TariffBody, TariffKind
    from billing.tariffs import add_version, create_tariff
    from store.audit import Actor
    from store.schema.commands import commands
    from store.schema.ledger import tariffs

    admin = Actor("operator", "admin")
    async with uow.begin() as conn:
        new_id = await create_tariff(conn, admin, "NIGHT", "Night saver", TariffKind.FLAT, client.app[CLOCK]())
        await add_version(conn, admin, new_id, TariffBody.flat(12_000), client.app[CLOCK](), client.app[CLOCK]())
    await login(client, "operator")
    sid, mid = seeded.subscriber_ids[0], seeded.meter_ids[0]
    page = await (await client.get(f"/console/subscribers/{sid}")).text()
    assert "Night saver" in page
    fields = _form_fields(page, f"/console/subscribers/{sid}/tariff")
    response = await client.post(
        f"/console/subscribers/{sid}/tariff", data={**fields, "tariff_id": str(new_id)}, allow_redirects=False
    )
    assert response.status == 303
    page = await (await client.get(response.headers["Location"])).text()
    assert 'data-testid="tariff">Night saver<' in page
    async with uow.connect() as conn:
        sent = (await conn.execute(select(commands.c.meter_id, commands.c.kind, commands.c.created_by))).all()
        audit = (await conn.execute(select(audit_log).where(audit_log.c.action == "bulk.tariff"))).mappings().one()
    assert sent == [(mid, "set_tariff", "operator:operator")]  # billing sent the tariff to the meter
    assert audit["actor"] == "operator"
    assert audit["after"]["tariff_id"] == new_id
    assert audit["after"]["changed"] == 1
    states = await (await client.get(f"/console/subscribers/{sid}/commands.json")).json()
    assert [(c["kind"], c["state"]) for c in states["items"]] == [("set_tariff", "0:0")]
    async with uow.connect() as conn:
        no_prices = await conn.scalar(select(tariffs.c.id).where(tariffs.c.code == "RES"))
    refused = await client.post(  # a tariff without prices cannot go to a meter: refused, nothing changes
        f"/console/subscribers/{sid}/tariff", data={**fields, "tariff_id": str(no_prices)}
    )
    assert refused.status == 422
    assert "has no prices yet" in await refused.text()
    report = await (await client.get("/api/v1/reports/communication?days=3")).json()
    assert [c["key"] for c in report["columns"]][:2] == ["day", "sent"]
    assert len(report["rows"]) == 3
    assert (await client.get("/api/v1/reports/nope")).status == 404
