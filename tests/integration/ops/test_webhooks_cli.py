"""`smsmeter webhooks ...` as a script runs it: add a subscription (its secret printed once), list, disable and
enable it, give it a new secret (printed once), list the deliveries, send one or every dead delivery again —
each change audited (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from store.events import Event, EventKind, emit
from store.schema.auth import audit_log
from store.schema.events import event_deliveries
from tests.support.service import run_cli

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


async def test_webhooks_from_the_command_line(engine: AsyncEngine, migrated_db_url: str, tmp_path: Path) -> None:
    env = {"SMSMETER_DATABASE_URL": migrated_db_url}
    added = run_cli(
        ["webhooks", "add", "--url", "https://scada.example/in", "--kinds", "alarm,command", "--operator", "ops1"],
        tmp_path,
        env,
    )
    assert added.returncode == 0, added.stderr
    assert "secret: whsec_" in added.stdout
    sub_id = int(added.stdout.split()[1].rstrip(":"))
    bad = run_cli(["webhooks", "add", "--url", "https://x.example", "--kinds", "gossip"], tmp_path, env)
    assert bad.returncode == 1
    assert "unknown event kind gossip" in bad.stderr

    assert run_cli(["webhooks", "disable", str(sub_id)], tmp_path, env).returncode == 0
    listed = run_cli(["webhooks", "list"], tmp_path, env)
    assert f"{sub_id}\tdisabled\thttps://scada.example/in\talarm,command" in listed.stdout
    assert run_cli(["webhooks", "enable", str(sub_id)], tmp_path, env).returncode == 0
    rotated = run_cli(["webhooks", "rotate-secret", str(sub_id), "--keep-previous-hours", "0"], tmp_path, env)
    assert rotated.returncode == 0, rotated.stderr
    assert "the old one no longer signs" in rotated.stdout
    new_secret = rotated.stdout.split("secret: ")[1].strip()
    assert new_secret.startswith("whsec_")
    assert new_secret != added.stdout.split("secret: ")[1].strip()
    too_long = run_cli(["webhooks", "rotate-secret", str(sub_id), "--keep-previous-hours", "500"], tmp_path, env)
    assert too_long.returncode == 1
    assert "keep_previous_hours" in too_long.stderr

    async with engine.begin() as conn:
        await emit(conn, [Event("alarm:1", EventKind.ALARM, NOW, {}), Event("alarm:2", EventKind.ALARM, NOW, {})], NOW)
        for row_id in (1, 2):
            await conn.execute(
                insert(event_deliveries).values(
                    event_row_id=row_id,
                    subscription_id=sub_id,
                    state="dead",
                    attempts=8,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
    dead = run_cli(["webhooks", "deliveries", "--state", "dead"], tmp_path, env)
    assert dead.returncode == 0, dead.stderr
    assert "alarm:1" in dead.stdout
    assert "2 deliveries" in dead.stderr
    first = int(dead.stdout.splitlines()[-1].split("\t")[0])
    one = run_cli(["webhooks", "resend", "--id", str(first)], tmp_path, env)
    assert one.returncode == 0, one.stderr
    again = run_cli(["webhooks", "resend", "--id", str(first)], tmp_path, env)
    assert again.returncode == 1  # still pending
    every = run_cli(["webhooks", "resend", "--dead", "--subscription", str(sub_id)], tmp_path, env)
    assert "1 dead deliveries queued again" in every.stdout
    async with engine.connect() as conn:
        states = (await conn.execute(select(event_deliveries.c.state))).scalars().all()
        actions = (await conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))).scalars().all()
    assert states == ["pending", "pending"]
    assert actions == [
        "event_subscription.create",
        "event_subscription.update",
        "event_subscription.update",
        "event_subscription.rotate_secret",
        "event_delivery.resend",
        "event_delivery.resend",
    ]
