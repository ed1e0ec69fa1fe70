"""The registry's doors from the command line, as a script calls them: subscribers add/edit, meters
install/replace/archive, tariffs create/add-version/push and alarm rules, each through billing's use case
(audited as the operator named) and answering one JSON line (both databases)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from billing import places
from meter_protocol import meter_code_with_check_digit
from store.audit import Actor
from store.schema.auth import audit_log
from store.schema.commands import commands
from tests.support.service import run_cli

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
SETUP = Actor("operator", "setup")
MASTER_KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def _code(serial: int) -> str:
    return meter_code_with_check_digit(f"8877{serial:015d}")


async def _audit(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(audit_log.c.actor, audit_log.c.action).order_by(audit_log.c.id))
        return [(a, b) for a, b in rows if a != "setup"]


async def test_a_script_registers_a_subscriber_a_meter_and_a_tariff(
    engine: AsyncEngine, migrated_db_url: str, tmp_path: Path
) -> None:
    async with engine.begin() as conn:
        await places.add_region(conn, SETUP, "64", "Nord", NOW)
        await places.add_settlement(conn, SETUP, "64", "01", "Balti", NOW)
        await places.add_street(conn, SETUP, "64", "01", "001", "Independentei", NOW)
    env = {"SMSMETER_DATABASE_URL": migrated_db_url, "SMSMETER_MASTER_KEY": MASTER_KEY_HEX}

    def cli(*args: str) -> dict[str, object]:
        result = run_cli([*args, "--operator", "script"], tmp_path, env)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        assert isinstance(answer, dict)
        return answer

    tariff = cli("tariffs", "create", "RES", "Residential", "--kind", "flat")
    assert cli("tariffs", "add-version", "RES", "--prices", '{"price_minor_per_kwh": 15}', "--from", "2026-01-01") == {
        "id": tariff["id"],
        "code": "RES",
        "version": 1,
    }
    sub = cli(
        "subscribers", "add", "640100100010001", "--name", "Ana Popescu", "--phone", "37360000001", "--tariff", "RES"
    )
    assert sub["code"] == "640100100010001"
    assert cli("subscribers", "edit", "640100100010001", "--email", "ana@example.org")["id"] == sub["id"]
    meter = cli("meters", "install", _code(1), "--msisdn", "37369000001", "--subscriber", "640100100010001")
    assert meter["subscriber_id"] == sub["id"]
    assert meter["status"] == "active"
    fresh = cli("meters", "replace", _code(1), _code(2), "--msisdn", "37369000002")
    assert fresh["subscriber_id"] == sub["id"]
    pushed = cli("tariffs", "push", "RES")
    assert pushed["meters"] == 1
    assert pushed["queued"] == 1
    archived = cli("meters", "archive", _code(2), "--reason", "house demolished")
    assert archived["status"] == "archived"
    rule = cli("alarm-rules", "add", "Tamper", "--kind", "tamper", "--recipient", "noc@utility.example")
    listed = run_cli(["alarm-rules", "list"], tmp_path, env)
    assert json.loads(listed.stdout.strip())["id"] == rule["id"]

    refused = run_cli(["subscribers", "add", "640100100010001", "--name", "Again"], tmp_path, env)
    assert refused.returncode == 1
    assert "is taken" in refused.stderr
    unknown = run_cli(["meters", "archive", _code(9), "--reason", "x"], tmp_path, env)
    assert unknown.returncode == 1

    async with engine.connect() as conn:
        kinds = (await conn.scalars(select(commands.c.kind))).all()
    assert [k for k in kinds if "tariff" in k] == ["set_tariff"]
    actions = [action for actor, action in await _audit(engine) if actor == "script"]
    for expected in (
        "tariff.create",
        "tariff.version",
        "subscriber.create",
        "subscriber.update",
        "meter.install",
        "meter.replace",
        "meter.archive",
        "alarm_rule.create",
    ):
        assert expected in actions, (expected, actions)
