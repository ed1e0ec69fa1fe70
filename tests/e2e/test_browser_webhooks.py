"""In Chromium on the demo (`serve --demo`): an admin adds an event webhook for payments, pointing at a receiver
(a real HTTP server on a free port) and is shown its signing secret once; a cash top-up's payment event reaches
the receiver, which refuses it, so (one attempt allowed) the delivery is dead and shown as a failure with its
attempt; with the receiver fixed, the admin sends it again and it is delivered with the same event id. Then the
admin gives the subscription a new secret (shown once), the old one kept signing for a day: the next payment is
signed with both, the new one first. The receiver checks every signature with hmac by hand. Screenshots in
tests/artifacts/."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.service import RunningService, running_service


class _Receiver(ThreadingHTTPServer):
    status = 503
    seen: list[tuple[dict[str, str], bytes]]


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(({k: v for k, v in self.headers.items()}, raw))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _Handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    env = {
        "SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.2",
        "SMSMETER_SIMULATOR_ACK_DELAY_S": "0.3",
        "SMSMETER_PAYMENTS_RECONCILE_ENABLED": "false",
        "SMSMETER_BILLING_EVENT_INTERVAL_S": "0.5",
        "SMSMETER_BILLING_EVENT_MAX_ATTEMPTS": "1",
    }
    with running_service(tmp_path_factory.mktemp("service"), env, args=("--demo",)) as running:
        yield running


def _wait_for(condition: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _verified(headers: dict[str, str], raw: bytes, secret: str) -> dict[str, object]:
    parts = dict(item.split("=", 1) for item in headers["Smsmeter-Signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    assert abs(time.time() - int(parts["t"])) < 300
    event: dict[str, object] = json.loads(raw)
    assert headers["Smsmeter-Event-Id"] == event["id"]
    return event


def test_an_admin_follows_payments_by_webhook_and_sends_a_failed_one_again(
    service: RunningService, receiver: _Receiver
) -> None:
    shots = Shots("event-webhooks")
    username, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    url = f"http://127.0.0.1:{receiver.server_address[1]}/smsmeter-events"
    with chromium() as browser:
        page = new_context(browser).new_page()  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(service.base_url + "/login")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/console"))

        page.click("a.nav-link:has-text('Webhooks')")
        page.fill("input[name=url]", url)
        page.fill("input[name=description]", "CIS payments")
        for kind in ("reading", "alarm", "command"):
            page.uncheck(f"input[name=kind_{kind}]")
        page.click("[data-testid=add-subscription]")
        secret = page.inner_text("[data-testid=webhook-secret] .code").strip()
        assert secret.startswith("whsec_")
        shots.take(page, "subscription-added")

        page.goto(service.base_url + "/console/subscribers?q=640100100020001")
        page.click("[data-testid=subscriber-link]")
        page.fill("input[name=amount]", "12.00")
        page.click("form[action$='/topup'] button")
        page.wait_for_url(re.compile(r"ok=topup"))

        _wait_for(lambda: len(receiver.seen) == 1)
        first = _verified(*receiver.seen[0], secret)
        assert first["kind"] == "payment"
        data = first["data"]
        assert isinstance(data, dict)
        assert (data["amount_minor"], data["subscriber"]) == (1200, "640100100020001")

        def dead_shown() -> bool:
            page.goto(service.base_url + "/console/webhooks?state=dead")
            return str(first["id"]) in page.inner_text("[data-testid=webhook-deliveries]")

        _wait_for(dead_shown)
        assert "HTTP 503" in page.inner_text("[data-testid=webhook-deliveries]")
        shots.take(page, "dead")

        receiver.status = 200
        page.click(f"[data-testid=webhook-deliveries] a:has-text('{first['id']}')")
        assert "503" in page.inner_text("[data-testid=webhook-attempts]")
        page.click("[data-testid=resend]")
        page.wait_for_url(re.compile(r"ok=webhook_resent"))
        _wait_for(lambda: len(receiver.seen) == 2)
        assert _verified(*receiver.seen[1], secret)["id"] == first["id"]  # same id: the receiver deduplicates

        def delivered_shown() -> bool:
            page.reload()
            return page.inner_text("[data-testid=delivery-state]").strip() == "delivered"

        _wait_for(delivered_shown)
        shots.take(page, "delivered")

        # the receiver's secret leaked: the admin gives the subscription a new one, keeping the old one signing
        # for a day so the receiver can change over; the next payment is signed with both, the new one first
        page.goto(service.base_url + "/console/webhooks")
        page.click("[data-testid=rotate-secret]")
        new_secret = page.inner_text("[data-testid=webhook-new-secret] .code").strip()
        assert new_secret.startswith("whsec_")
        assert new_secret != secret
        assert "signs beside it until" in page.inner_text("[data-testid=webhook-new-secret]")
        assert page.inner_text("[data-testid=secret-hint]").startswith("…" + new_secret[-4:])
        shots.take(page, "new-secret")

        page.goto(service.base_url + "/console/subscribers?q=640100100020001")
        page.click("[data-testid=subscriber-link]")
        page.fill("input[name=amount]", "13.00")
        page.click("form[action$='/topup'] button")
        page.wait_for_url(re.compile(r"ok=topup"))
        _wait_for(lambda: len(receiver.seen) == 3)
        headers, raw = receiver.seen[2]
        assert _macs(headers, raw, new_secret, secret) == (True, True)
        event = json.loads(raw)
        assert (event["kind"], event["data"]["amount_minor"]) == ("payment", 1300)


def _macs(headers: dict[str, str], raw: bytes, new: str, old: str) -> tuple[bool, bool]:
    """Whether the signature's first v1 is the new secret's, and its second the old one's (HMAC by hand)."""
    t, *v1s = headers["Smsmeter-Signature"].split(",")
    signed = t.removeprefix("t=").encode() + b"." + raw
    macs = [v.removeprefix("v1=") for v in v1s]
    expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in (new, old)]
    return macs[0] == expected[0], len(macs) == 2 and macs[1] == expected[1]
