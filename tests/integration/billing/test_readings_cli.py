"""`smsmeter readings import` as a process: a file of readings taken by hand lands on the meter, bad lines
are reported and make the exit code 1."""

from __future__ import annotations

from pathlib import Path

from tests.integration.billing.conftest import meter_code
from tests.integration.billing.test_importer import GOOD, _csv
from tests.support.service import run_cli


def test_the_readings_import_command(tmp_path: Path) -> None:
    env = {"SMSMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", "SMSMETER_DATA_DIR": str(tmp_path)}
    assert run_cli(["import", str(_csv(tmp_path, *GOOD))], tmp_path, env, timeout_s=120).returncode == 0
    path = tmp_path / "round.csv"
    path.write_text(
        "meter_code,read_at,register,kwh\n"
        f"{meter_code(1)},2026-01-01T08:00:00Z,import_wh,100\n"
        f"{meter_code(1)},2026-01-02T08:00:00Z,import_wh,104.5\n"
        f"{meter_code(1)},2026-01-03T08:00:00Z,import_wh,90\n",
        encoding="utf-8",
    )
    done = run_cli(["readings", "import", str(path)], tmp_path, env, timeout_s=120)
    assert done.returncode == 0, done.stderr
    assert "imported 3 of 3 readings (ok 2, backwards 1); 0 rejected" in done.stdout
    again = run_cli(["readings", "import", str(path)], tmp_path, env, timeout_s=120)
    assert again.returncode == 1
    assert "line 2: the meter has this reading already" in again.stderr
    assert run_cli(["readings", "import", str(tmp_path / "nope.csv")], tmp_path, env).returncode == 1
    out = tmp_path / "mdm"
    exported = run_cli(["readings", "export", "--day", "2026-01-02", "--out", str(out)], tmp_path, env, timeout_s=120)
    assert exported.returncode == 0, exported.stderr
    assert "1 readings of 1 meters on 2026-01-02" in exported.stdout
    assert "valid against the MeterReadings schema" in exported.stdout
    assert (out / "readings-2026-01-02.xml").is_file()
    assert run_cli(["readings", "export", "--day", "soon"], tmp_path, env).returncode == 2


def test_the_reading_plan_commands(tmp_path: Path) -> None:
    import asyncio

    from billing import reading_plans
    from store.engine import create_engine
    from store.uow import UnitOfWork
    from tests.integration.billing.conftest import NOW, OPERATOR

    env = {"SMSMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", "SMSMETER_DATA_DIR": str(tmp_path)}
    assert run_cli(["import", str(_csv(tmp_path, *GOOD))], tmp_path, env, timeout_s=120).returncode == 0

    async def add_plan() -> int:
        engine = create_engine(env["SMSMETER_DATABASE_URL"])
        try:
            fields = reading_plans.PlanFields(
                name="Everyone nightly", items="registers", every="daily", group_kind="all"
            )
            return int((await reading_plans.create_plan(UnitOfWork(engine), OPERATOR, fields, NOW))["id"])
        finally:
            await engine.dispose()

    plan_id = asyncio.run(add_plan())
    started = run_cli(["readings", "run-plan", str(plan_id)], tmp_path, env, timeout_s=120)
    assert started.returncode == 0, started.stderr
    assert "read requests queued" in started.stdout
    listed = run_cli(["readings", "plans"], tmp_path, env, timeout_s=120)
    assert listed.returncode == 0, listed.stderr
    assert "Everyone nightly  registers daily  all  01:00-05:00  last run 1 " in listed.stdout
    assert run_cli(["readings", "run-plan", "999"], tmp_path, env, timeout_s=120).returncode == 1
