"""The manufacturer's key file (docs/operations.md §7b) on both databases: export → import round trip,
a bad row refusing the whole file with its report, a wrong transport key, no key in the clear, the audit
row; a meter in stock installed with its file's key; and the two commands as processes."""

from __future__ import annotations

import csv
import io
import json
import secrets
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billing import conformance, meter_registry, provisioning
from billing.errors import InvalidField
from billing.rules.key_file import (
    ExportRow,
    KeyFileRejected,
    KeyFileUnreadable,
    TransportKeyRefused,
    read_key_file,
    write_key_file,
)
from gateway.keys import KeyRing
from store.crypto import unwrap_from_storage
from store.schema import metadata
from store.schema import registry as R  # noqa: N812
from store.schema.auth import audit_log
from store.schema.commands import meter_counters
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, meter_code, new_subscriber
from tests.support.service import run_cli

TRANSPORT_KEY = bytes.fromhex("5f1e0c3a9b7d2e4f6a8c0e1f3b5d7a9c" * 2)  # AES-256, shared with the factory


def _meters(count: int, *, start: int = 1, keys: list[bytes] | None = None) -> list[ExportRow]:
    keys = keys or [secrets.token_bytes(16) for _ in range(count)]
    return [
        ExportRow(
            meter_code(start + n),
            f"3736910{start + n:04d}",
            0,
            keys[n],
            "xml" if n % 2 else "binary",
            "2.1.0",
            "electricity",
        )
        for n in range(count)
    ]


async def _count(uow: UnitOfWork, table: object) -> int:
    async with uow.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def _stored_key(uow: UnitOfWork, code: str) -> tuple[str, str, int, bytes]:
    async with uow.connect() as conn:
        row = (
            await conn.execute(
                select(R.meters.c.status, R.meters.c.profile, R.meter_keys.c.key_id, R.meter_keys.c.wrapped_key)
                .join(R.meter_keys, R.meter_keys.c.meter_id == R.meters.c.id)
                .where(R.meters.c.code == code)
            )
        ).one()
    return row.status, row.profile, row.key_id, row.wrapped_key


async def _audit(uow: UnitOfWork, action: str) -> list[dict[str, object]]:
    async with uow.connect() as conn:
        rows = await conn.execute(select(audit_log).where(audit_log.c.action == action))
        return [dict(r._mapping) for r in rows]


async def test_an_imported_key_file_registers_the_meters_in_stock_with_their_keys_under_the_master_key(
    uow: UnitOfWork,
) -> None:
    rows = _meters(4)
    data = write_key_file(rows, TRANSPORT_KEY)
    result = await provisioning.import_key_file(
        uow, OPERATOR, data, TRANSPORT_KEY, file_name="batch-7.csv", master_key=MASTER_KEY, now=NOW
    )
    assert (result.rows, result.created, result.updated) == (4, 4, 0)
    for row in rows:
        status, profile, key_id, wrapped = await _stored_key(uow, row.meter_code)
        assert (status, profile, key_id) == ("stock", row.profile, 0)
        assert unwrap_from_storage(MASTER_KEY, wrapped) == row.key
    # no key in the clear anywhere: every cell of every table, as bytes and as hexadecimal
    cells: list[bytes] = []
    async with uow.connect() as conn:
        for table in metadata.sorted_tables:
            for record in await conn.execute(select(table)):
                cells.extend(v if isinstance(v, bytes) else str(v).lower().encode() for v in record)
    dump = b"\x00".join(cells)
    assert len(dump) > 1000
    for row in rows:
        assert row.key not in dump
        assert row.key.hex().encode() not in dump
    [entry] = await _audit(uow, "meter.keys_import")
    assert entry["target"] == "key_file:batch-7.csv"
    assert entry["actor"] == OPERATOR.name
    after = entry["after"]
    assert isinstance(after, dict)
    assert (after["rows"], after["created"], after["updated"]) == (4, 4, 0)
    assert "wrapped_key" not in json.dumps(after)


async def test_export_then_the_file_back_from_the_factory_with_its_sim_numbers(uow: UnitOfWork) -> None:
    batch = provisioning.read_batch(f"{meter_code(21)}\n{meter_code(22)}\n\n{meter_code(23)}\n".encode())
    keys = iter([bytes([n]) * 16 for n in (1, 2, 3)])
    exported = await provisioning.export_key_file(
        uow, OPERATOR, batch, TRANSPORT_KEY, master_key=KeyRing(MASTER_KEY), now=NOW, new_key=lambda: next(keys)
    )
    for n, code in zip((1, 2, 3), (meter_code(21), meter_code(22), meter_code(23)), strict=True):
        status, _, _, wrapped = await _stored_key(uow, code)
        assert status == "stock"
        assert unwrap_from_storage(MASTER_KEY, wrapped) == bytes([n]) * 16
    assert b"01010101" not in exported  # the keys travel wrapped
    # the factory loads the keys, fits the SIMs and sends the file back with their numbers
    table = list(csv.DictReader(io.StringIO(exported.decode())))
    for n, entry in enumerate(table):
        entry.update(msisdn=f"37369200{n:03d}", firmware="3.0.1", profile="xml")
    back = io.StringIO()
    writer = csv.DictWriter(back, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    result = await provisioning.import_key_file(
        uow, OPERATOR, back.getvalue().encode(), TRANSPORT_KEY, file_name="back.csv", master_key=MASTER_KEY, now=NOW
    )
    assert (result.created, result.updated) == (0, 3)
    async with uow.connect() as conn:
        meter = await meter_registry.get_meter_by_code(conn, meter_code(22))
    assert (meter.status, meter.msisdn, meter.profile, meter.firmware) == ("stock", "37369200001", "xml", "3.0.1")
    assert len(await _audit(uow, "meter.keys_export")) == 1
    # a file that claims another key for a meter in stock is refused
    other = write_key_file(
        [ExportRow(meter_code(21), "37369200000", 0, bytes(16), "xml", "3.0.1", "electricity")], TRANSPORT_KEY
    )
    with pytest.raises(KeyFileRejected) as err:
        await provisioning.import_key_file(
            uow, OPERATOR, other, TRANSPORT_KEY, file_name="x.csv", master_key=MASTER_KEY, now=NOW
        )
    assert [(r.line, r.field) for r in err.value.rejects] == [(2, "wrapped_key")]


async def test_a_meter_in_stock_is_installed_with_the_key_and_profile_of_its_file(
    uow: UnitOfWork, streets: None
) -> None:
    [row] = _meters(1, start=31, keys=[bytes(range(16, 32))])
    row = ExportRow(row.meter_code, row.msisdn, 3, row.key, "xml", "1.4", "water")
    await provisioning.import_key_file(
        uow,
        OPERATOR,
        write_key_file([row], TRANSPORT_KEY),
        TRANSPORT_KEY,
        file_name="f.csv",
        master_key=MASTER_KEY,
        now=NOW,
    )
    subscriber, _ = await new_subscriber(uow, meter=None)
    async with uow.begin() as conn:
        meter = await meter_registry.install_meter(
            conn,
            OPERATOR,
            subscriber.id,
            meter_registry.NewMeter(code=row.meter_code, msisdn="", make="Acme", phases=1),
            master_key=MASTER_KEY,
            now=NOW,
        )
    assert (meter.status, meter.subscriber_id, meter.profile, meter.kind, meter.key_id) == (
        "active",
        subscriber.id,
        "xml",
        "water",
        3,
    )
    assert meter.msisdn == row.msisdn
    assert meter.make == "Acme"
    async with uow.connect() as conn:
        assert await KeyRing(MASTER_KEY).key_for(conn, meter.id) == (3, row.key)


async def test_one_bad_row_refuses_the_whole_file_with_every_problem_reported(uow: UnitOfWork) -> None:
    good = _meters(3, start=41)
    data = write_key_file(good, TRANSPORT_KEY).decode().splitlines()
    wrapped = data[1].split(",")[3]
    data += [
        f"{meter_code(44)[:-1]}0,37369100044,0,{wrapped},binary,2.1.0,electricity",  # check digit
        f"{meter_code(45)},12,0,{wrapped},binary,2.1.0,electricity",  # SIM number
        f"{meter_code(46)},37369100046,256,{wrapped},serial,,electricity",  # key id, profile, firmware
        f"{meter_code(47)},37369100047,0,{'00' * 24},binary,2.1.0,electricity",  # does not unwrap
        f"{meter_code(41)},37369100048,0,{wrapped},binary,2.1.0,electricity",  # the same meter twice
    ]
    with pytest.raises(KeyFileRejected) as err:
        await provisioning.import_key_file(
            uow,
            OPERATOR,
            ("\n".join(data) + "\n").encode(),
            TRANSPORT_KEY,
            file_name="bad.csv",
            master_key=MASTER_KEY,
            now=NOW,
        )
    report = [(r.line, r.field) for r in err.value.rejects]
    assert report == [
        (5, "meter_code"),
        (6, "msisdn"),
        (7, "key_id"),
        (7, "profile"),
        (7, "firmware"),
        (8, "wrapped_key"),
        (9, "meter_code"),
    ]
    assert "check digit" in err.value.rejects[0].reason
    assert "line 2" in err.value.rejects[-1].reason
    assert await _count(uow, R.meters) == 0
    assert await _count(uow, R.meter_keys) == 0
    assert await _audit(uow, "meter.keys_import") == []


async def test_a_meter_or_sim_the_registry_has_refuses_the_file(uow: UnitOfWork, streets: None) -> None:
    _, installed = await new_subscriber(uow, meter=51)
    assert installed is not None
    rows = [
        ExportRow(installed.code, "37369100999", 0, bytes(16), "binary", "1", "electricity"),
        ExportRow(meter_code(52), installed.msisdn, 0, bytes(16), "binary", "1", "electricity"),
    ]
    with pytest.raises(KeyFileRejected) as err:
        await provisioning.import_key_file(
            uow,
            OPERATOR,
            write_key_file(rows, TRANSPORT_KEY),
            TRANSPORT_KEY,
            file_name="f",
            master_key=MASTER_KEY,
            now=NOW,
        )
    assert [(r.line, r.field) for r in err.value.rejects] == [(2, "meter_code"), (3, "msisdn")]
    assert "key change" in err.value.rejects[0].reason
    assert installed.code in err.value.rejects[1].reason


async def test_a_wrong_transport_key_is_refused_with_a_clear_error(uow: UnitOfWork) -> None:
    data = write_key_file(_meters(2, start=61), TRANSPORT_KEY)
    with pytest.raises(TransportKeyRefused, match="not the key the file was wrapped under"):
        await provisioning.import_key_file(
            uow, OPERATOR, data, bytes(32), file_name="f", master_key=MASTER_KEY, now=NOW
        )
    assert await _count(uow, R.meters) == 0


async def test_the_json_form_reads_like_the_csv_form(uow: UnitOfWork) -> None:
    rows = _meters(2, start=71)
    data = write_key_file(rows, TRANSPORT_KEY, as_json=True)
    assert json.loads(data)["format"] == "smsmeter-key-file/1"
    result = await provisioning.import_key_file(
        uow, OPERATOR, data, TRANSPORT_KEY, file_name="f.json", master_key=MASTER_KEY, now=NOW
    )
    assert result.created == 2
    broken = json.loads(data)
    broken["meters"][1]["profile"] = "sms"
    with pytest.raises(KeyFileRejected) as err:
        read_key_file(json.dumps(broken).encode(), TRANSPORT_KEY)
    assert [(r.line, r.field) for r in err.value.rejects] == [(2, "profile")]
    with pytest.raises(KeyFileUnreadable, match="missing: wrapped_key"):
        read_key_file(b"meter_code,msisdn,key_id,profile,firmware\n", TRANSPORT_KEY)


def test_the_key_file_commands(tmp_path: Path) -> None:
    env = {"SMSMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", "SMSMETER_DATA_DIR": str(tmp_path)}
    key_file = tmp_path / "transport.key"
    key_file.write_text(TRANSPORT_KEY.hex() + "\n")
    batch = tmp_path / "batch.csv"
    batch.write_text(
        f"meter_code,msisdn,firmware\n{meter_code(81)},37369300081,1.0\n{meter_code(82)},37369300082,1.0\n"
    )
    exported = run_cli(
        ["meters", "export-keys", str(batch), "--transport-key", str(key_file), "--out", str(tmp_path / "keys.json")],
        tmp_path,
        env,
        timeout_s=120,
    )
    assert exported.returncode == 0, exported.stderr
    assert "2 meters registered in stock" in exported.stdout
    file = json.loads((tmp_path / "keys.json").read_text())
    assert [m["meter_code"] for m in file["meters"]] == [meter_code(81), meter_code(82)]
    # a new head end receives the file
    env2 = {
        "SMSMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db2.sqlite'}",
        "SMSMETER_DATA_DIR": str(tmp_path / "b"),
    }
    wrong = run_cli(
        ["meters", "import-keys", str(tmp_path / "keys.json"), "--transport-key-hex", "00" * 16], tmp_path, env2
    )
    assert wrong.returncode == 1
    assert "not the key the file was wrapped under" in wrong.stderr
    file["meters"][1]["msisdn"] = "x"
    (tmp_path / "bad.json").write_text(json.dumps(file))
    bad = run_cli(
        [
            "meters",
            "import-keys",
            str(tmp_path / "bad.json"),
            "--transport-key",
            str(key_file),
            "--report",
            str(tmp_path / "r.csv"),
        ],
        tmp_path,
        env2,
    )
    assert bad.returncode == 1
    assert "line 2, msisdn" in bad.stderr
    assert (tmp_path / "r.csv").read_text().splitlines() == [
        "line,field,reason",
        "2,msisdn,the SIM's number: 5 to 15 digits",
    ]
    good = run_cli(
        ["meters", "import-keys", str(tmp_path / "keys.json"), "--transport-key", str(key_file)], tmp_path, env2
    )
    assert good.returncode == 0, good.stderr
    assert "imported 2 meters: 2 registered in stock" in good.stdout


async def test_a_conformance_run_leaves_a_meter_in_stock_under_the_key_it_was_given(
    uow: UnitOfWork, streets: None
) -> None:
    from dataclasses import replace

    from meter_protocol import new_meter
    from meter_protocol.conformance import Bench, run_reference

    [row] = _meters(1, start=91, keys=[bytes(range(48, 64))])
    await provisioning.import_key_file(
        uow,
        OPERATOR,
        write_key_file([row], TRANSPORT_KEY),
        TRANSPORT_KEY,
        file_name="f",
        master_key=MASTER_KEY,
        now=NOW,
    )
    sample = await conformance.sample_meter(uow, row.meter_code, MASTER_KEY)
    assert (sample.key_id, sample.key, sample.next_counter) == (0, row.key, 1)
    meter = replace(new_meter(sample.code, sample.key), accepts_xml=False)
    bench = Bench(sample.code, 0, sample.key, bytes(16), xml=False, next_counter=sample.next_counter)
    _, runs = run_reference(meter, bench, int(NOW.timestamp()))
    assert all(r.passed for r in runs)
    outcome = conformance.ConformanceOutcome(
        True, (), bench.key_id, dict(bench.keys), bench.next_counter, bench.uplink.highest, bench.uplink.bitmap
    )
    await conformance.record_conformance(uow, OPERATOR, sample, outcome, master_key=MASTER_KEY, now=NOW)
    async with uow.connect() as conn:
        assert await KeyRing(MASTER_KEY).key_for(conn, sample.id) == (3, bench.keys[3])
        stored = dict((await conn.execute(select(R.meter_keys.c.key_id, R.meter_keys.c.status))).all())
        counters = (await conn.execute(select(meter_counters.c.next_counter, meter_counters.c.in_highest))).one()
    assert stored == {0: "retired", 1: "retired", 2: "retired", 3: "active"}
    assert counters == (bench.next_counter, bench.uplink.highest)
    [entry] = await _audit(uow, "meter.conformance")
    assert entry["after"]["passed"] is True
    # a second run would give key ids 4..6; a meter installed at a subscriber is refused
    again = await conformance.sample_meter(uow, row.meter_code, MASTER_KEY)
    assert (again.key_id, again.next_counter) == (3, bench.next_counter)
    _, installed = await new_subscriber(uow, meter=92)
    assert installed is not None
    with pytest.raises(InvalidField, match="runs on a meter in stock"):
        await conformance.sample_meter(uow, installed.code, MASTER_KEY)


async def test_a_failed_conformance_run_keeps_the_key_in_force_and_the_keys_it_gave(uow: UnitOfWork) -> None:
    [row] = _meters(1, start=95)
    await provisioning.import_key_file(
        uow,
        OPERATOR,
        write_key_file([row], TRANSPORT_KEY),
        TRANSPORT_KEY,
        file_name="f",
        master_key=MASTER_KEY,
        now=NOW,
    )
    sample = await conformance.sample_meter(uow, row.meter_code, MASTER_KEY)
    given = {0: row.key, 1: bytes([1]) * 16, 2: bytes([2]) * 16}
    outcome = conformance.ConformanceOutcome(False, ("C15",), 2, given, 30, 12, 1)
    await conformance.record_conformance(uow, OPERATOR, sample, outcome, master_key=MASTER_KEY, now=NOW)
    async with uow.connect() as conn:
        assert await KeyRing(MASTER_KEY).key_for(conn, sample.id) == (0, row.key)
        assert await KeyRing(MASTER_KEY).key_by_id(conn, sample.id, 2) == bytes([2]) * 16
        stored = dict((await conn.execute(select(R.meter_keys.c.key_id, R.meter_keys.c.status))).all())
    assert stored == {0: "active", 1: "failed", 2: "failed"}
    [entry] = await _audit(uow, "meter.conformance")
    assert entry["after"]["failed_lines"] == ["C15"]
