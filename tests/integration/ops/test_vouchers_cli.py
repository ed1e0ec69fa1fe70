"""`smsmeter vouchers generate` as a cashier's script runs it: a batch of codes written as CSV (with their check
digit, in groups of four), kept only as hashes, audited; `vouchers list` counts them; `vouchers void` withdraws one
code (both databases)."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.rules.self_service import read_voucher_code
from billing.vouchers import code_hash
from store.schema.auth import audit_log
from store.schema.self_service import vouchers
from tests.support.service import run_cli

MASTER_KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


async def test_a_cashier_generates_a_batch_to_print(engine: AsyncEngine, migrated_db_url: str, tmp_path: Path) -> None:
    env = {"SMSMETER_DATABASE_URL": migrated_db_url, "SMSMETER_MASTER_KEY": MASTER_KEY_HEX}
    out = tmp_path / "batch.csv"
    made = run_cli(
        ["vouchers", "generate", "--count", "3", "--amount", "2500", "--note", "kiosk 7", "--out", str(out),
         "--operator", "cashier1"],
        tmp_path,
        env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 3
    codes = [read_voucher_code(r["code"]) for r in rows]
    assert None not in codes
    assert all(len(r["code"].split()) == 4 for r in rows)  # 4 4 4 2
    async with engine.connect() as conn:
        kept = set((await conn.execute(select(vouchers.c.code_hash))).scalars())
        audited = (await conn.execute(select(audit_log.c.actor, audit_log.c.action))).all()
    assert kept == {code_hash(c) for c in codes if c}
    assert [tuple(a) for a in audited] == [("cashier1", "voucher.generate")]
    listed = run_cli(["vouchers", "list"], tmp_path, env)
    assert listed.returncode == 0, listed.stderr
    assert "3 made\t0 used\t0 withdrawn\tkiosk 7" in listed.stdout
    voided = run_cli(["vouchers", "void", "--code", rows[0]["code"], "--reason", "misprinted"], tmp_path, env)
    assert voided.returncode == 0, voided.stderr
    assert "1 withdrawn, 0 already used" in voided.stdout
    assert "1 withdrawn" in run_cli(["vouchers", "list"], tmp_path, env).stdout
    async with engine.connect() as conn:
        statuses = sorted((await conn.execute(select(vouchers.c.status))).scalars())
        actions = (await conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))).scalars().all()
    assert statuses == ["new", "new", "void"]
    assert actions == ["voucher.generate", "voucher.void"]
    refused = run_cli(["vouchers", "generate", "--count", "0", "--amount", "100"], tmp_path, env)
    assert refused.returncode == 1
    assert "count" in refused.stderr
