"""The Prometheus alert rules shipped in docker/prometheus/alerts.yml: `promtool check rules` accepts them, and
every smsmeter metric they name is one the service serves on /metrics (process and fleet metrics)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from smsmeter.metrics import FleetCollector, Metrics

RULES = Path(__file__).parents[3] / "docker" / "prometheus" / "alerts.yml"


def _served_names() -> set[str]:
    metrics = Metrics()
    metrics.registry.register(FleetCollector(engine=None))  # type: ignore[arg-type]  # collects its empty snapshot
    text = generate_latest(metrics.registry).decode()
    names = set(re.findall(r"^# (?:HELP|TYPE) (\w+)", text, re.MULTILINE))
    names |= set(re.findall(r"^(\w+)[{ ]", text, re.MULTILINE))
    return names | {f"{n}_total" for n in names}


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI requires promtool (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alert_rules_name_only_metrics_the_service_serves() -> None:
    used = set(re.findall(r"\bsmsmeter_\w+", RULES.read_text()))
    assert used, "the rules name no smsmeter metric"
    served = _served_names()
    unknown = sorted(name for name in used if name not in served)
    assert unknown == []
