"""The operations endpoints of a running service, per role: /healthz, /readyz, /metrics, JSON logs."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

import meter_protocol as mp
from billing import meter_registry, places, registry
from billing.notices import Recipient, queue_notice
from billing.rules.notices import NoticeKind
from payments.provider_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_provider_webhook
from store.audit import Actor
from store.engine import create_engine
from tests.support.net import free_port
from tests.support.service import running_service


def _scrape(base_url: str) -> dict[str, object]:
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return {f.name: f for f in text_string_to_metric_families(resp.read().decode())}


def test_all_roles_ready_with_fleet_metrics_and_json_logs(tmp_path: Path, postgres_url: str) -> None:
    env = {"SMSMETER_DATABASE_URL": postgres_url, "SMSMETER_LOG_JSON": "true"}
    with running_service(tmp_path, env) as service:
        status, body = service.get_json("/readyz")
        assert status == 200, body
        assert {c["name"]: c["ready"] for c in body["checks"]} == {"database": True, "transport": True}  # type: ignore[attr-defined]
        families = _scrape(service.base_url)
        for name in (
            "smsmeter_commands",
            "smsmeter_oldest_open_command_age_seconds",
            "smsmeter_command_accept_seconds",
            "smsmeter_command_receipt_seconds",
            "smsmeter_command_ack_seconds",
            "smsmeter_sms_submit_seconds",
            "smsmeter_transport_bound",
            "smsmeter_sms_window_in_use",
            "smsmeter_webhook_events",
            "smsmeter_webhooks",
            "smsmeter_wrong_sms",
            "smsmeter_notices",
            "smsmeter_notices_sent",
        ):
            assert name in families, name
        assert "python_gc_objects_collected" not in families  # the app's own registry, not the global one
    lines = [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]
    assert any("ready" in line["msg"] for line in lines)
    assert all(line["role"] == "all" for line in lines)


def test_a_gateway_process_serves_only_the_operations_endpoints(tmp_path: Path, postgres_url: str) -> None:
    env = {"SMSMETER_DATABASE_URL": postgres_url}
    with running_service(tmp_path, env, args=("--role", "gateway")) as service:
        status, body = service.get_json("/readyz")
        assert status == 200, body
        families = _scrape(service.base_url)
        assert "smsmeter_sms_submits" in families
        assert "smsmeter_commands" not in families  # the fleet view is the web role's
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(service.base_url + "/console/login", timeout=5)
        refused.value.close()
        assert refused.value.code == 404


def test_a_web_process_does_not_wait_for_a_channel(tmp_path: Path, postgres_url: str) -> None:
    env = {"SMSMETER_DATABASE_URL": postgres_url}
    with running_service(tmp_path, env, args=("--role", "web", "--role", "scheduler")) as service:
        status, body = service.get_json("/readyz")
        assert status == 200
        assert [c["name"] for c in body["checks"]] == ["database"]  # type: ignore[attr-defined]
        assert "smsmeter_commands" in _scrape(service.base_url)


# --- webhook outcomes and notices, counted by a running service ------------------------------------------------

PROVIDER = "kiosk"
PROVIDER_SECRET = "kiosk-secret-0123456789"
MASTER_KEY_HEX = "4d" * 32
T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
ACTOR = Actor("system", "metrics-test")


class _Mailbox:
    """An SMTP server that takes mail for everyone but refuses one address."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.delivered: list[tuple[list[str], str]] = []  # (recipients, subject)

    async def handle_RCPT(  # noqa: N802
        self, server: object, session: object, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address == self.refused:
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
        subject = message_from_bytes(envelope.content, policy=email_policy.default)["Subject"]
        self.delivered.append((list(envelope.rcpt_tos), str(subject)))
        return "250 OK"


async def _subscribers(url: str) -> tuple[str, list[Recipient]]:
    """A subscriber with a meter (who pays), and three who get notices: phone and e-mail, phone only, and an
    e-mail address the mail server refuses."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await places.add_region(conn, ACTOR, "01", "North", T0)
            await places.add_settlement(conn, ACTOR, "01", "01", "Riverside", T0)
            await places.add_street(conn, ACTOR, "01", "01", "001", "Main Street", T0)
            payer = await registry.create_subscriber(
                conn, ACTOR, "010100100010001", {"name": "Payer"}, currency="USD", now=T0
            )
            await meter_registry.install_meter(
                conn,
                ACTOR,
                payer.id,
                meter_registry.NewMeter(code=mp.meter_code_with_check_digit(f"7700{1:015d}"), msisdn="37360000001"),
                master_key=bytes.fromhex(MASTER_KEY_HEX),
                now=T0,
            )
            recipients = []
            for i, contact in enumerate(
                (
                    {"phone": "+37360000002", "email": "both@example.org"},
                    {"phone": "+37360000003"},
                    {"email": "refused@example.org"},
                ),
                start=2,
            ):
                s = await registry.create_subscriber(
                    conn, ACTOR, f"01010010001{i:04d}", {"name": f"Notified {i}", **contact}, currency="USD", now=T0
                )
                recipients.append(Recipient(s.id, s.code, "en", contact.get("phone"), contact.get("email")))
    finally:
        await engine.dispose()
    return payer.code, recipients


async def _queue_notices(url: str, recipients: list[Recipient]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for r in recipients:
                await queue_notice(
                    conn,
                    r,
                    NoticeKind.LOW_CREDIT,
                    f"metrics-test:{r.subscriber_id}",
                    utility="Test",
                    amount="1.00",
                    now=datetime.now(UTC) - timedelta(seconds=1),
                )
    finally:
        await engine.dispose()


async def _post(
    http: aiohttp.ClientSession,
    base_url: str,
    event: dict[str, object],
    *,
    provider: str = PROVIDER,
    secret: str = PROVIDER_SECRET,
    signed_at: int | None = None,
) -> tuple[int, str]:
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if signed_at is None else signed_at
    headers = {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign_provider_webhook(secret, timestamp, body),
        "Content-Type": "application/json",
    }
    async with http.post(f"{base_url}/webhooks/payments/{provider}", data=body, headers=headers) as resp:
        answer = await resp.json()
        return resp.status, str(answer.get("status") or answer.get("error"))


def _payment(event_id: str, account: str, ref: str, kind: str = "payment.succeeded") -> dict[str, object]:
    payment: dict[str, object] = {"id": ref, "amount_minor": 5000, "currency": "USD", "account": account}
    if kind == "payment.refunded":
        payment = {"id": ref, "refunded_minor": 100, "currency": "USD"}
    return {"id": event_id, "type": kind, "created": int(time.time()), "payment": payment}


async def test_webhook_outcomes_and_notices_are_counted(tmp_path: Path, postgres_url: str) -> None:
    payer, recipients = await _subscribers(postgres_url)
    mailbox = _Mailbox(refused="refused@example.org")
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = {
        "SMSMETER_DATABASE_URL": postgres_url,
        "SMSMETER_MASTER_KEY": MASTER_KEY_HEX,
        "SMSMETER_PAYMENTS_PROVIDERS": f"{PROVIDER}={PROVIDER_SECRET}",
        "SMSMETER_SMTP_HOST": "127.0.0.1",
        "SMSMETER_SMTP_PORT": str(smtp.port),
        "SMSMETER_BILLING_NOTICE_INTERVAL_S": "0.2",
    }
    try:
        with running_service(tmp_path, env) as service:
            url = service.base_url
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                paid = _payment("evt-1", payer, "tx-1")
                answers = [
                    await _post(http, url, paid),  # applied
                    await _post(http, url, paid),  # the same event again: duplicate
                    await _post(http, url, _payment("evt-2", payer, "tx-2", kind="payment.pending")),  # ignored
                    await _post(http, url, _payment("evt-3", "019999999999999", "tx-3")),  # unknown account: conflict
                    await _post(http, url, _payment("evt-4", payer, "tx-4"), secret="not-the-secret-at-all"),  # forged
                    await _post(
                        http, url, _payment("evt-5", payer, "tx-5"), signed_at=int(time.time()) - 3600
                    ),  # stale
                    await _post(
                        http, url, _payment("evt-6", payer, "tx-6"), signed_at=int(time.time()) + 3600
                    ),  # future
                    await _post(http, url, _payment("evt-7", payer, "tx-7", kind="payment.refunded")),  # deferred
                    await _post(http, url, _payment("evt-8", payer, "tx-8"), provider="nobody"),  # unknown provider
                ]
            assert [status for status, _ in answers] == [200, 200, 200, 200, 400, 400, 400, 503, 400], answers
            assert [what for _, what in answers[:4]] == ["applied", "duplicate", "ignored", "conflict"], answers

            await _queue_notices(postgres_url, recipients)
            deadline = time.monotonic() + 20
            while True:  # the notice job runs every 0.2 s: 2 SMS and 1 e-mail sent, 1 e-mail refused
                samples = _samples(service.base_url)
                sent = {
                    (dict(labels)["channel"], dict(labels)["outcome"]): value
                    for (name, labels), value in samples.items()
                    if name == "smsmeter_notices_sent_total"
                }
                if sum(sent.values()) >= 4 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
    finally:
        smtp.stop()
    hooks = {
        dict(labels)["outcome"]: value
        for (name, labels), value in samples.items()
        if name == "smsmeter_webhooks_total" and dict(labels)["provider"] == PROVIDER
    }
    assert hooks == {
        "applied": 1,
        "duplicate": 1,
        "ignored": 1,
        "conflict": 1,
        "forged": 1,
        "stale": 1,
        "future": 1,
        "deferred": 1,
    }, hooks
    assert (
        samples[("smsmeter_webhooks_total", frozenset({("provider", "unknown"), ("outcome", "unknown_provider")}))] == 1
    )
    assert sent == {("sms", "sent"): 2, ("email", "sent"): 1, ("email", "failed"): 1}, sent
    notice_mail = [m for m in mailbox.delivered if "invoice" not in m[1].lower()]  # the monthly invoice goes too
    assert [to for to, _subject in notice_mail] == [["both@example.org"]], mailbox.delivered
    # The fleet view agrees: the events recorded, the notices by status.
    assert samples[("smsmeter_notices", frozenset({("channel", "sms"), ("status", "sent")}))] == 2
    assert samples[("smsmeter_notices", frozenset({("channel", "email"), ("status", "sent")}))] == 1
    assert samples[("smsmeter_notices", frozenset({("channel", "email"), ("status", "queued")}))] == 1  # retried later


def _samples(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
