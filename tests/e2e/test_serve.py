"""`smsmeter` as a process: a fresh start with no configuration, health, clean shutdown, the CLI."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.service import run_cli, running_service


def test_serve_with_no_configuration_runs_on_sqlite(tmp_path: Path) -> None:
    with running_service(tmp_path) as service:
        status, body = service.get_json("/healthz")
        assert status == 200
        assert body["status"] == "ok"
        assert body["database"]["state"] == "ok"  # type: ignore[index]
        assert "sqlite" in body["database"]["detail"]  # type: ignore[index]
        assert body["transport"]["detail"] == "simulator"  # type: ignore[index]
        assert body["version"]
        assert (tmp_path / "var" / "smsmeter.db").exists()
        assert (tmp_path / "var" / "master.key").stat().st_mode & 0o077 == 0
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=20) == 0
    assert "stopping" in service.log()


def test_serve_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    with running_service(tmp_path, {"SMSMETER_DATABASE_URL": postgres_url}) as service:
        status, body = service.get_json("/healthz")
        assert status == 200
        assert "postgresql" in body["database"]["detail"]  # type: ignore[index]
        service.process.send_signal(signal.SIGINT)
        assert service.process.wait(timeout=20) == 0


def test_bad_configuration_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = run_cli(["serve"], tmp_path, {"SMSMETER_HTTP_PORT": "http", "SMSMETER_SMPP_PASSWORD": "pw-secret"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["smsmeter: configuration error: http.port (SMSMETER_HTTP_PORT): must be an integer"]
    assert "pw-secret" not in result.stderr + result.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_commands_and_demo(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    env = {}
    if backend == "postgresql":
        env["SMSMETER_DATABASE_URL"] = request.getfixturevalue("empty_db_url_postgres")
    result = run_cli(["db", "upgrade"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "revision" in result.stdout
    result = run_cli(["db", "downgrade", "base"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert run_cli(["db", "current"], tmp_path, env).stdout.strip() == "empty"
    result = run_cli(["demo"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "Operator login: admin / " in result.stdout
    again = run_cli(["demo"], tmp_path, env)
    assert again.returncode == 0
    assert "loaded already" in again.stdout


def test_a_port_taken_before_the_service_binds_it_is_given_up_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from tests.support import service as helper

    real_free_port = helper.free_port
    with socket.socket() as taken:  # someone else's server on the port the helper picks first
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        picks = iter([taken_port])
        monkeypatch.setattr(helper, "free_port", lambda: next(picks, 0) or real_free_port())
        with running_service(tmp_path) as service:
            assert not service.base_url.endswith(f":{taken_port}")
            assert service.get_json("/healthz")[0] == 200
