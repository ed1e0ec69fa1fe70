"""In Chromium on the demo (`serve --demo`, its SMTP server a real aiosmtpd on a free port): an operator of the
utility's finance reads the revenue report and downloads it as PDF; then schedules it weekly as PDF to two
addresses, sees the schedule with its file kind, presses "Send now", and the scheduler's job sends it: the
schedule shows it sent and both mailboxes hold the same PDF, the report's own title inside. Screenshots in
tests/artifacts/report-schedules-journey/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.net import free_port
from tests.support.service import RunningService, running_service

RECIPIENTS = ("cfo@utility.example", "board@utility.example")


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=email_policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[_Inbox, int]]:
    box, port = _Inbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, inbox: tuple[_Inbox, int]) -> Iterator[RunningService]:
    require_chromium()
    env = {
        "SMSMETER_SMTP_HOST": "127.0.0.1",
        "SMSMETER_SMTP_PORT": str(inbox[1]),
        "SMSMETER_SMTP_SENDER": "reports@utility.example",
        "SMSMETER_BILLING_REPORT_INTERVAL_S": "1",
        "SMSMETER_PAYMENTS_RECONCILE_ENABLED": "false",
    }
    with running_service(tmp_path_factory.mktemp("service"), env, args=("--demo",)) as running:
        yield running


def test_a_report_read_downloaded_as_pdf_then_sent_by_email_as_pdf(
    service: RunningService, inbox: tuple[_Inbox, int]
) -> None:
    box, _ = inbox
    shots = Shots("report-schedules-journey")
    var = service.log_path.parent / "var"
    username, password = (var / "demo-login.txt").read_text().split()[:2]
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.goto(service.base_url + "/login")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/console"))

        page.goto(service.base_url + "/console/reports/revenue?days=30")
        shots.take(page, "revenue")
        with page.expect_download() as downloading:
            page.click("[data-testid=export-pdf]")
        download = downloading.value
        assert re.fullmatch(r"revenue-\d{8}-\d{8}\.pdf", download.suggested_filename)
        assert Path(download.path()).read_bytes().startswith(b"%PDF-")

        page.click("[data-testid=report-schedules-link]")
        page.wait_for_url(re.compile(r"/console/report-schedules$"))
        form = page.locator("[data-testid=report-schedule-form]")
        form.locator("select[name=report]").select_option("revenue")
        form.locator("select[name=period]").select_option("weekly")
        form.locator("select[name=format]").select_option("pdf")
        form.locator("input[name=recipients]").fill(", ".join(RECIPIENTS))
        form.locator("[data-testid=add-schedule]").click()
        page.wait_for_url(re.compile(r"ok=report_scheduled"))
        row = page.locator("[data-testid=report-schedules] tr[data-schedule-id]").last
        assert row.locator("[data-testid=schedule-format]").inner_text().strip() == "PDF"
        shots.take(page, "scheduled")

        row.locator("[data-testid=send-now]").click()
        page.wait_for_url(re.compile(r"ok=report_due_now"))
        deadline = time.monotonic() + 30
        while "sent" not in page.locator("[data-testid=report-schedules] tr[data-schedule-id]").last.inner_text():
            assert time.monotonic() < deadline, "the scheduled report was not sent"
            time.sleep(0.5)
            page.reload()
        shots.take(page, "sent")

    reports = [(rcpts, m) for rcpts, m in box.messages if m["Subject"].startswith("Revenue ")]  # not the alarms'
    assert sorted(r for rcpts, _ in reports for r in rcpts) == sorted(RECIPIENTS)
    _, message = reports[0]
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert re.fullmatch(r"revenue-\d{8}-\d{8}\.pdf", str(attachment.get_filename()))
    body = attachment.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert body.startswith(b"%PDF-")
    assert b"Revenue" in body  # the title, in the PDF's metadata
