"""The operations endpoints of a running service, per role: /healthz, /readyz, /metrics, JSON logs."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

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
