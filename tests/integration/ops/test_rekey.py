"""Master-key rotation: every meter key re-wrapped under the new key, unchanged inside; all or nothing."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsmeter.rekey import RotationError, key_fingerprint, rotate_master_key
from store.audit import Actor
from store.crypto import unwrap_from_storage, unwrap_padded_from_storage, wrap_for_storage, wrap_padded_for_storage
from store.engine import create_engine
from store.schema.auth import audit_log
from store.schema.events import event_subscriptions
from store.schema.registry import meter_keys, meters
from tests.support import databases
from tests.support.service import run_cli

T0 = datetime(2026, 11, 22, tzinfo=UTC)


async def _meters_with_keys(engine: AsyncEngine, master: bytes, n: int) -> list[bytes]:
    keys = [secrets.token_bytes(16) for _ in range(n)]
    async with engine.begin() as conn:
        for i, key in enumerate(keys):
            meter_id = (
                await conn.execute(
                    insert(meters).values(code=f"8800{i:016d}", msisdn=f"3736900{i:04d}", installed_at=T0)
                )
            ).inserted_primary_key[0]
            await conn.execute(
                insert(meter_keys).values(
                    meter_id=meter_id,
                    key_id=0,
                    wrapped_key=wrap_for_storage(master, key),
                    status="active",
                    created_at=T0,
                )
            )
    return keys


async def _unwrapped(engine: AsyncEngine, master: bytes) -> list[bytes]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(meter_keys.c.wrapped_key).order_by(meter_keys.c.id))).scalars().all()
    return [unwrap_from_storage(master, w) for w in rows]


async def test_rotation_rewraps_every_key_and_can_be_run_again(engine: AsyncEngine) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    keys = await _meters_with_keys(engine, old, 5)
    result = await rotate_master_key(engine, old, new, actor=Actor("operator", "cli:root"))
    assert (result.rewrapped, result.already_new) == (5, 0)
    assert await _unwrapped(engine, new) == keys
    again = await rotate_master_key(engine, old, new)
    assert (again.rewrapped, again.already_new) == (0, 5)
    rows = await _audit(engine)
    assert [(r["actor_kind"], r["actor"], r["action"], r["target"]) for r in rows] == [
        ("operator", "cli:root", "masterkey.rotate", "masterkey"),
        ("system", "smsmeter", "masterkey.rotate", "masterkey"),
    ]
    assert rows[0]["before"] == {"key": key_fingerprint(old)}
    assert rows[0]["after"] == {"key": key_fingerprint(new), "rewrapped": 5, "already_new": 0}
    assert old.hex() not in str(rows)  # fingerprints only, never a key
    assert new.hex() not in str(rows)


async def _audit(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        query = select(audit_log).where(audit_log.c.action == "masterkey.rotate").order_by(audit_log.c.id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def test_a_wrong_current_key_changes_nothing(engine: AsyncEngine) -> None:
    old = secrets.token_bytes(32)
    keys = await _meters_with_keys(engine, old, 3)
    with pytest.raises(RotationError, match="unwraps under neither"):
        await rotate_master_key(engine, secrets.token_bytes(32), secrets.token_bytes(32))
    assert await _unwrapped(engine, old) == keys
    with pytest.raises(RotationError, match="is the current one"):
        await rotate_master_key(engine, old, old)
    assert await _audit(engine) == []  # nothing rotated, nothing audited


def test_rotate_from_the_command_line(tmp_path: Path) -> None:
    env = {"SMSMETER_DATABASE_URL": databases.sqlite_url(tmp_path)}
    assert run_cli(["demo"], tmp_path, env).returncode == 0
    new_key = tmp_path / "new.key"
    new_key.write_text(secrets.token_hex(32) + "\n")
    result = run_cli(["masterkey", "rotate", "--operator", "alice", str(new_key)], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("meter keys re-wrapped: ")
    assert int(result.stdout.split(":")[1].split()[0]) > 0

    async def audited() -> list[dict[str, object]]:
        engine = create_engine(env["SMSMETER_DATABASE_URL"])
        try:
            return await _audit(engine)
        finally:
            await engine.dispose()

    [row] = asyncio.run(audited())
    assert row["actor"] == "alice"
    assert row["after"]["rewrapped"] == int(result.stdout.split(":")[1].split()[0])  # type: ignore[index]
    bad = tmp_path / "bad.key"
    bad.write_text("not hex")
    refused = run_cli(["masterkey", "rotate", str(bad)], tmp_path, env)
    assert refused.returncode == 1
    assert "cannot read a hexadecimal key" in refused.stderr


async def test_rotation_rewraps_the_sts_vending_keys_too(engine: AsyncEngine) -> None:
    from billing.sts_vending import add_vending_key
    from store.audit import SYSTEM
    from store.crypto import unwrap_padded_from_storage
    from store.schema.sts import sts_vending_keys

    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    vending = secrets.token_bytes(8)
    async with engine.begin() as conn:
        await add_vending_key(conn, SYSTEM, old, "123456", 1, vending, T0)
    result = await rotate_master_key(engine, old, new)
    assert (result.rewrapped, result.already_new) == (1, 0)
    async with engine.connect() as conn:
        wrapped = await conn.scalar(select(sts_vending_keys.c.wrapped_key))
    assert unwrap_padded_from_storage(new, wrapped) == vending


def test_a_vending_key_is_added_from_the_command_line(tmp_path: Path) -> None:
    env = {"SMSMETER_DATABASE_URL": databases.sqlite_url(tmp_path)}
    key_file = tmp_path / "vending.key"
    key_file.write_text(secrets.token_hex(8) + "\n")
    args = ["sts", "add-vending-key", "--supply-group", "600100", "--revision", "2", str(key_file)]
    result = run_cli(args, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "revision 2 (wrapped)" in result.stdout
    again = run_cli(args, tmp_path, env)
    assert again.returncode == 1
    assert "already has revision 2" in again.stderr


async def test_event_webhook_secrets_are_rewrapped_too(engine: AsyncEngine) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    current, before = b"whsec_current_one", b"whsec_the_one_before"
    async with engine.begin() as conn:
        await conn.execute(
            insert(event_subscriptions).values(
                url="https://cis.example/in",
                kinds="payment",
                secret_sealed=wrap_padded_for_storage(old, current),
                secret_hint="_one",
                previous_secret_sealed=wrap_padded_for_storage(old, before),
                previous_until=T0,
                created_by="admin",
                created_at=T0,
                updated_at=T0,
            )
        )
        await conn.execute(  # one never rotated: nothing to re-wrap in its previous column
            insert(event_subscriptions).values(
                url="https://scada.example/in",
                kinds="alarm",
                secret_sealed=wrap_padded_for_storage(old, current),
                created_by="admin",
                created_at=T0,
                updated_at=T0,
            )
        )
    result = await rotate_master_key(engine, old, new)
    assert (result.rewrapped, result.already_new) == (3, 0)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(event_subscriptions).order_by(event_subscriptions.c.id))).all()
    assert [unwrap_padded_from_storage(new, r.secret_sealed) for r in rows] == [current, current]
    assert unwrap_padded_from_storage(new, rows[0].previous_secret_sealed) == before
    assert rows[1].previous_secret_sealed is None
