"""The key file's doors (docs/operations.md §7b): imported and made from /api/v1 and from the console's
meters page (admins only, `meters.keys`), a refused file answered with every problem; a meter's protocol
profile changed from its card and the API, audited."""

from __future__ import annotations

import json

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from billing.rules.key_file import ExportRow, write_key_file
from meter_protocol import meter_code_with_check_digit
from store.crypto import unwrap_from_storage
from store.schema.registry import meter_keys, meters
from store.uow import UnitOfWork
from tests.integration.web.helpers import MASTER_KEY, Seeded, login
from tests.integration.web.test_registry_doors import api_key, audit_rows

TRANSPORT_KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def code(serial: int) -> str:
    return meter_code_with_check_digit(f"8822{serial:015d}")


def key_file(*serials: int, profile: str = "xml") -> bytes:
    rows = [ExportRow(code(n), f"37369400{n:03d}", 0, bytes([n]) * 16, profile, "4.2", "electricity") for n in serials]
    return write_key_file(rows, TRANSPORT_KEY)


async def _stored(uow: UnitOfWork, meter_code: str) -> tuple[str, str, bytes]:
    async with uow.connect() as conn:
        row = (
            await conn.execute(
                select(meters.c.status, meters.c.profile, meter_keys.c.wrapped_key)
                .join(meter_keys, meter_keys.c.meter_id == meters.c.id)
                .where(meters.c.code == meter_code)
            )
        ).one()
    return row.status, row.profile, row.wrapped_key


async def test_the_api_imports_a_key_file_and_answers_a_bad_one_with_every_problem(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    admin = await api_key(uow, client, "admin")
    operator = await api_key(uow, client, "operator")
    body = {"content": key_file(1, 2).decode(), "file_name": "batch.csv", "transport_key": TRANSPORT_KEY.hex()}
    assert (await client.post("/api/v1/meters/key-files", json=body, headers=operator)).status == 403
    response = await client.post("/api/v1/meters/key-files", json=body, headers=admin)
    assert response.status == 201, await response.text()
    assert await response.json() == {"rows": 2, "created": 2, "updated": 0}
    status, profile, wrapped = await _stored(uow, code(2))
    assert (status, profile) == ("stock", "xml")
    assert unwrap_from_storage(MASTER_KEY, wrapped) == bytes([2]) * 16
    (entry,) = await audit_rows(uow, "meter.keys_import")
    assert entry["after"]["created"] == 2
    assert entry["actor_kind"] == "api_key"

    bad = key_file(3, 4).decode().replace("37369400004", "12")
    response = await client.post("/api/v1/meters/key-files", json={**body, "content": bad}, headers=admin)
    assert response.status == 422
    problem = await response.json()
    assert problem["rejects"] == [{"line": 3, "field": "msisdn", "reason": "the SIM's number: 5 to 15 digits"}]
    assert problem["rows"] == 2
    wrong = {**body, "content": key_file(5).decode(), "transport_key": "00" * 16}
    response = await client.post("/api/v1/meters/key-files", json=wrong, headers=admin)
    assert response.status == 422
    assert "not the key the file was wrapped under" in (await response.json())["detail"]

    stock = await (await client.get("/api/v1/meters/stock", headers=operator)).json()
    assert [m["code"] for m in stock["items"]] == [code(2), code(1)]
    assert stock["items"][0]["firmware"] == "4.2"

    response = await client.post(
        "/api/v1/meters/key-files/export",
        json={
            "meters": [code(7), {"meter_code": code(8), "profile": "xml"}],
            "transport_key": TRANSPORT_KEY.hex(),
            "format": "json",
        },
        headers=admin,
    )
    assert response.status == 201, await response.text()
    exported = json.loads((await response.json())["content"])
    assert [(m["meter_code"], m["profile"]) for m in exported["meters"]] == [(code(7), "binary"), (code(8), "xml")]
    again = await client.post(
        "/api/v1/meters/key-files/export",
        json={"meters": [code(7)], "transport_key": TRANSPORT_KEY.hex()},
        headers=admin,
    )
    assert again.status == 422
    assert (await again.json())["rejects"][0]["reason"] == "registered already"


async def test_the_profile_of_a_meter_changes_from_the_api(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    operator = await api_key(uow, client, "operator")
    meter_id = seeded.meter_ids[0]
    response = await client.patch(f"/api/v1/meters/{meter_id}", json={"profile": "xml"}, headers=operator)
    assert response.status == 200, await response.text()
    assert (await response.json())["profile"] == "xml"
    assert (await client.patch(f"/api/v1/meters/{meter_id}", json={"profile": "sms"}, headers=operator)).status == 422
    assert (await client.patch(f"/api/v1/meters/{meter_id}", json={"code": "1"}, headers=operator)).status == 422
    (entry,) = await audit_rows(uow, "meter.profile")
    assert (entry["before"], entry["after"]) == ({"profile": "binary"}, {"profile": "xml"})


async def test_the_console_receives_a_key_file_and_shows_the_problems_of_a_bad_one(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    csrf = await login(client, "admin")
    page = await client.get("/console/meters")
    assert 'data-testid="key-file-form"' in await page.text()

    def upload(content: bytes, transport_key: str) -> FormData:
        form = FormData()
        form.add_field("csrf_token", csrf)
        form.add_field("key_file", content, filename="batch-9.csv", content_type="text/csv")
        form.add_field("transport_key", transport_key)
        return form

    bad = key_file(11, 12).decode().replace(",xml,", ",serial,", 1).encode()
    response = await client.post("/console/meters/key-files", data=upload(bad, TRANSPORT_KEY.hex()))
    assert response.status == 422
    text = await response.text()
    assert 'data-testid="rejects"' in text
    assert '<td>2</td><td class="code">profile</td>' in text
    response = await client.post("/console/meters/key-files", data=upload(key_file(11, 12), TRANSPORT_KEY.hex()))
    assert response.status == 200  # after the redirect: the meters page with the stock
    text = await response.text()
    assert 'data-testid="keys-imported"' in text
    assert code(12) in text
    (entry,) = await audit_rows(uow, "meter.keys_import")
    assert entry["target"] == "key_file:batch-9.csv"
    assert entry["actor_kind"] == "operator"

    form = FormData()
    form.add_field("csrf_token", csrf)
    form.add_field("meter_codes", f"{code(13)}\n{code(14)}")
    form.add_field("transport_key", TRANSPORT_KEY.hex())
    response = await client.post("/console/meters/key-files/export", data=form)
    assert response.status == 200
    assert "attachment" in response.headers["Content-Disposition"]
    assert (await response.text()).splitlines()[0] == "meter_code,msisdn,key_id,wrapped_key,profile,firmware,kind"

    # the operator may not import keys, but changes a meter's profile on its card
    await client.post("/logout", data={"csrf_token": csrf})
    csrf = await login(client, "operator")
    assert 'data-testid="key-file-form"' not in await (await client.get("/console/meters")).text()
    meter_id = seeded.meter_ids[1]
    response = await client.post(f"/console/meters/{meter_id}/profile", data={"csrf_token": csrf, "profile": "xml"})
    assert response.status == 200
    assert 'data-testid="meter-profile">xml' in await response.text()
