"""Reports by e-mail: an admin schedules a report (console form or /api/v1/report-schedules, audited; watchers
read, others may not change); at midnight UTC the scheduler's job sends it as the CSV the console downloads,
through the SMTP port the notices use, to a real SMTP server (aiosmtpd on a free port), once per period; a
failure is shown on the schedule; "send now" makes it due at once (both databases)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email import policy as email_policy
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller

from billing.notices import SmtpEmailSender
from store.uow import UnitOfWork
from tests.integration.web.helpers import START, Seeded, login
from tests.integration.web.test_registry_doors import api_key, audit_rows
from tests.support.net import free_port
from web.scheduled_reports import list_schedules, send_due_reports


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=email_policy.default)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


MIDNIGHT = START.replace(hour=0) + timedelta(days=1)


async def test_a_scheduled_report_goes_as_csv_once_a_period(
    client: TestClient, uow: UnitOfWork, seeded: Seeded, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    admin = await api_key(uow, client, "admin")
    operator = await api_key(uow, client, "operator")
    viewer = await api_key(uow, client, "viewer")
    body = {"report": "communication", "period": "daily", "recipients": ["cfo@utility.example", "noc@utility.example"]}
    assert (await client.post("/api/v1/report-schedules", json=body, headers=operator)).status == 403
    response = await client.post("/api/v1/report-schedules", json=body, headers=admin)
    assert response.status == 201, await response.text()
    schedule = await response.json()
    assert schedule["next_run_at"].startswith(MIDNIGHT.date().isoformat())
    bad = await client.post("/api/v1/report-schedules", json={**body, "report": "gossip"}, headers=admin)
    assert bad.status == 422
    bad = await client.post("/api/v1/report-schedules", json={**body, "recipients": ["nobody"]}, headers=admin)
    assert bad.status == 422
    listed = await (await client.get("/api/v1/report-schedules", headers=viewer)).json()
    assert [s["id"] for s in listed["items"]] == [schedule["id"]]

    sender = SmtpEmailSender("127.0.0.1", port, "reports@utility.example", timeout_s=5)
    assert await send_due_reports(uow, sender, START, "USD") == 0  # not midnight yet
    assert await send_due_reports(uow, sender, MIDNIGHT + timedelta(minutes=3), "USD") == 1
    assert await send_due_reports(uow, sender, MIDNIGHT + timedelta(minutes=8), "USD") == 0  # once a period
    assert sorted(r for rcpts, _ in inbox.messages for r in rcpts) == ["cfo@utility.example", "noc@utility.example"]
    _, message = inbox.messages[0]
    assert message["Subject"].startswith("Communication")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "communication-20260115-20260116.csv"
    csv = attachment.get_payload(decode=True).decode("utf-8-sig")  # the console's CSV, with its BOM
    assert csv.splitlines()[0].startswith("Day,Commands")

    response = await client.post(f"/api/v1/report-schedules/{schedule['id']}/send-now", headers=admin)
    assert response.status == 202
    assert await send_due_reports(uow, sender, MIDNIGHT + timedelta(minutes=9), "USD") == 1
    refused = SmtpEmailSender("127.0.0.1", free_port(), "reports@utility.example", timeout_s=2)
    assert await send_due_reports(uow, refused, MIDNIGHT + timedelta(days=1, minutes=1), "USD") == 0
    async with uow.connect() as conn:
        [shown] = await list_schedules(conn)
    assert shown["last_status"] == "failed"
    assert shown["last_error"]
    assert shown["next_run_at"] == MIDNIGHT + timedelta(days=2)  # not retried in a loop: the next period

    assert (await client.delete(f"/api/v1/report-schedules/{schedule['id']}", headers=viewer)).status == 403
    assert (await client.delete(f"/api/v1/report-schedules/{schedule['id']}", headers=admin)).status == 204
    assert (await client.delete(f"/api/v1/report-schedules/{schedule['id']}", headers=admin)).status == 404
    assert len(await audit_rows(uow, "report_schedule.create")) == 1
    assert len(await audit_rows(uow, "report_schedule.send_now")) == 1
    assert len(await audit_rows(uow, "report_schedule.delete")) == 1
    assert [r["after"]["status"] for r in await audit_rows(uow, "report_schedule.run")] == ["sent", "sent", "failed"]
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["paths"]["/api/v1/report-schedules"]["post"]["x-roles"] == ["admin"]


async def test_an_admin_schedules_a_report_in_the_console(client: TestClient, uow: UnitOfWork, seeded: Seeded) -> None:
    await login(client, "viewer")
    page = await (await client.get("/console/report-schedules")).text()
    assert "No report is sent by e-mail." in page
    assert 'data-testid="report-schedule-form"' not in page
    client.session.cookie_jar.clear()

    token = await login(client, "admin")
    assert 'data-testid="report-schedules-link"' in await (await client.get("/console/reports/revenue")).text()
    form = {
        "csrf_token": token,
        "report": "revenue",
        "period": "weekly",
        "recipients": "a@utility.example; b@x.example",
    }
    response = await client.post("/console/report-schedules", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    page = await (await client.get(response.headers["Location"])).text()
    assert "Report scheduled" in page
    assert "a@utility.example, b@x.example" in page
    assert (await client.post("/console/report-schedules", data={**form, "recipients": "x"})).status == 422
    async with uow.connect() as conn:
        [schedule] = await list_schedules(conn)
    response = await client.post(
        f"/console/report-schedules/{schedule['id']}/send-now", data={"csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    async with uow.connect() as conn:
        [schedule] = await list_schedules(conn)
    assert schedule["next_run_at"] == START
    response = await client.post(
        f"/console/report-schedules/{schedule['id']}/delete", data={"csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    assert "no longer sent" in await (await client.get(response.headers["Location"])).text()


async def test_a_report_goes_as_the_file_its_schedule_names_and_downloads_as_pdf(
    client: TestClient, uow: UnitOfWork, seeded: Seeded, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    admin = await api_key(uow, client, "admin")
    body = {"report": "revenue", "period": "weekly", "recipients": ["cfo@utility.example"]}
    bad = await client.post("/api/v1/report-schedules", json={**body, "format": "docx"}, headers=admin)
    assert bad.status == 422
    assert "format" in await bad.text()
    as_csv = await (await client.post("/api/v1/report-schedules", json=body, headers=admin)).json()
    assert as_csv["format"] == "csv"  # what a schedule made without a format is sent as, as before
    await client.delete(f"/api/v1/report-schedules/{as_csv['id']}", headers=admin)
    for fmt in ("xlsx", "pdf"):
        response = await client.post("/api/v1/report-schedules", json={**body, "format": fmt}, headers=admin)
        assert response.status == 201, await response.text()
        assert (await response.json())["format"] == fmt
    sender = SmtpEmailSender("127.0.0.1", port, "reports@utility.example", timeout_s=5)
    assert await send_due_reports(uow, sender, MIDNIGHT + timedelta(minutes=1), "USD") == 2
    attached = {
        a.get_filename(): (a.get_content_type(), a.get_payload(decode=True))
        for _, message in inbox.messages
        for a in message.iter_attachments()
    }
    assert attached["revenue-20260109-20260116.pdf"][0] == "application/pdf"
    assert attached["revenue-20260109-20260116.pdf"][1].startswith(b"%PDF-")
    xlsx_type, xlsx = attached["revenue-20260109-20260116.xlsx"]
    assert xlsx_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert xlsx.startswith(b"PK")  # a zip: the workbook the console downloads
    assert [r["after"]["format"] for r in await audit_rows(uow, "report_schedule.create")] == ["csv", "xlsx", "pdf"]
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["components"]["schemas"]["ReportScheduleInput"]["properties"]["format"]["enum"] == [
        "csv",
        "xlsx",
        "pdf",
    ]

    await login(client, "admin")
    response = await client.get("/console/reports/revenue.pdf?days=7")
    assert response.status == 200
    assert response.content_type == "application/pdf"
    assert (await response.read()).startswith(b"%PDF-")
    page = await (await client.get("/console/report-schedules")).text()
    assert '<option value="pdf">PDF</option>' in page
    assert page.count('data-testid="schedule-format">PDF<') == 1
