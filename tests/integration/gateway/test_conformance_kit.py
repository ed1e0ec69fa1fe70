"""`smsmeter conformance` as a process: the checklist (docs/protocol.md §14) against the reference meter
over the simulated network (a meter in stock, its new key kept by the registry) and over a real SMPP bind
to the node-smpp SMSC (tests/peers), where a reference meter answers as MO; a meter that gets one line
wrong fails that line and the command exits non-zero."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from billing.rules.key_file import ExportRow, write_key_file
from gateway.fleet import Fleet
from meter_protocol import meter_code_with_check_digit
from store.engine import create_engine
from store.schema.auth import audit_log
from store.schema.commands import meter_counters
from store.schema.registry import meter_keys, meters
from tests.peers.bounds import bounded_test
from tests.peers.smsc import MobileOriginated, NodeSmsc, SmscError
from tests.support.service import smsmeter_env

CODE = meter_code_with_check_digit("8800000000000000777")
MSISDN = "37369777001"
KEY = bytes.fromhex("8f0e1d2c3b4a59687766554433221100")
TRANSPORT_KEY = bytes(range(32))
SHORT_NUMBER = "7220"


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    """A whole checklist is some fifty exchanges, each waiting a little for a reply too many."""
    yield from bounded_test(150.0)


FAST = ["--reply-timeout-s", "10", "--settle-s", "0.2", "--silence-s", "0.6"]
QUICK = ["--reply-timeout-s", "1.5", "--settle-s", "0.2", "--silence-s", "0.6"]  # a failing meter leaves replies out


async def _cli(args: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smsmeter",
        *args,
        cwd=cwd,
        env=smsmeter_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_reference_meter_passes_every_line_over_the_simulated_network(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    env = {
        "SMSMETER_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "SMSMETER_DATA_DIR": str(tmp_path),
        "SMSMETER_SIMULATOR_ACK_DELAY_S": "0",
        "SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0",
    }
    keys = tmp_path / "keys.csv"
    keys.write_bytes(write_key_file([ExportRow(CODE, MSISDN, 0, KEY, "xml", "1.0", "electricity")], TRANSPORT_KEY))
    rc, _, err = await _cli(
        ["meters", "import-keys", str(keys), "--transport-key-hex", TRANSPORT_KEY.hex()], tmp_path, env
    )
    assert rc == 0, err
    rc, out, err = await _cli(
        ["conformance", "--meter", CODE, *FAST, "--json", str(tmp_path / "run.json")], tmp_path, env
    )
    assert rc == 0, out + err
    lines = [line for line in out.splitlines() if line[:1] == "C"]
    assert [line.split()[:2] for line in lines] == [[f"C{n:02d}", "pass"] for n in range(1, 17)]
    assert "vector: tests/vectors/conformance_xml.json#C15" in out
    assert "16 of 16 lines passed" in out
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["passed"]
    assert run["lines"][0]["exchanges"][0]["replies"]
    # the registry has the key the run left the meter with, and the run is audited
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            meter = (await conn.execute(select(meters).where(meters.c.code == CODE))).one()
            next_counter = await conn.scalar(
                select(meter_counters.c.next_counter).where(meter_counters.c.meter_id == meter.id)
            )
            statuses = dict((await conn.execute(select(meter_keys.c.key_id, meter_keys.c.status))).all())
            audit = (
                await conn.execute(select(audit_log.c.after).where(audit_log.c.action == "meter.conformance"))
            ).one()
    finally:
        await engine.dispose()
    assert (meter.status, meter.key_id) == ("stock", 3)
    assert next_counter is not None
    assert next_counter > 40
    assert statuses == {0: "retired", 1: "retired", 2: "retired", 3: "active"}
    assert audit.after["passed"] is True
    # a meter the registry does not have is refused
    rc, _, err = await _cli(
        ["conformance", "--meter", meter_code_with_check_digit("8800000000000000778"), *FAST], tmp_path, env
    )
    assert rc == 1
    assert "no meter" in err


@contextlib.asynccontextmanager
async def _meter_answering(smsc: NodeSmsc, fleet: Fleet) -> AsyncIterator[None]:
    """Every submit the SMSC took goes to the reference meter; its replies come back as MO."""

    async def pump() -> None:
        since = len(await smsc.submits())
        while True:
            batch = await smsc.submits(since, wait_s=1.0)
            if batch:  # the SMSC lists a submit before it decides its status: read them again
                await asyncio.sleep(0.02)
                batch = (await smsc.submits(since))[: len(batch)]
            for submit in batch:
                if submit.status != 0:
                    continue
                for reply in fleet.answer(submit.destination, submit.body, bool(submit.esm_class & 0x40)):
                    with contextlib.suppress(SmscError):
                        await smsc.inject_mo(MobileOriginated(reply.source, SHORT_NUMBER, reply.body, reply.has_udh))
            since += len(batch)

    task = asyncio.create_task(pump())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _smpp_env(tmp_path: Path, smsc: NodeSmsc) -> dict[str, str]:
    return {
        "SMSMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "SMSMETER_DATA_DIR": str(tmp_path),
        "SMSMETER_SHORT_NUMBER": SHORT_NUMBER,
        "SMSMETER_TRANSPORT": "smpp",
        "SMSMETER_SMPP_HOST": smsc.host,
        "SMSMETER_SMPP_PORT": str(smsc.smpp_port),
        "SMSMETER_SMPP_SYSTEM_ID": smsc.system_id,
        "SMSMETER_SMPP_PASSWORD": smsc.password,
    }


async def test_the_reference_meter_passes_every_line_over_smpp(tmp_path: Path, smsc: NodeSmsc) -> None:
    fleet = Fleet()
    fleet.add(MSISDN, CODE, KEY, key_id=0)
    key_file = tmp_path / "meter.key"
    key_file.write_text(KEY.hex() + "\n")
    async with _meter_answering(smsc, fleet):
        rc, out, err = await _cli(
            ["conformance", "--code", CODE, "--msisdn", MSISDN, "--key-file", str(key_file), "--xml", "yes", *FAST],
            tmp_path,
            _smpp_env(tmp_path, smsc),
        )
    assert rc == 0, out + err
    assert "over smpp" in out
    assert "16 of 16 lines passed" in out
    submits = await smsc.submits()
    assert all(s.destination == MSISDN and s.data_coding == 0x04 for s in submits)
    assert fleet.meter(MSISDN).key_id == 3


async def test_a_meter_that_answers_xml_in_binary_fails_c14_and_the_command_exits_non_zero(
    tmp_path: Path, smsc: NodeSmsc
) -> None:
    fleet = Fleet()
    fleet.add(MSISDN, CODE, KEY, key_id=0)
    fleet.replace(MSISDN, replace(fleet.meter(MSISDN), accepts_xml=False))  # told it takes XML, it does not
    key_file = tmp_path / "meter.key"
    key_file.write_text(KEY.hex())
    async with _meter_answering(smsc, fleet):
        rc, out, _ = await _cli(
            ["conformance", "--code", CODE, "--msisdn", MSISDN, "--key-file", str(key_file), "--xml", "yes", *QUICK],
            tmp_path,
            _smpp_env(tmp_path, smsc),
        )
    assert rc == 1
    failed = [line.split()[0] for line in out.splitlines() if line[:1] == "C" and line.split()[1] == "FAIL"]
    assert "C14" in failed
    assert "C01" not in failed
    assert "✗" in out
