"""docker/: the compose file is what `docker compose config` accepts, and every service in it would start.

The file is validated by the compose tool itself: `docker compose config` (the v2 plugin) where it is installed,
else `docker-compose config` (Debian's docker-compose 1.29, which scripts/test installs); neither needs a
Docker engine. With CI=true a missing tool fails the test instead of skipping it. The file therefore keeps to
what both accept (no top-level `name:`: 1.29 refuses it; the project name comes from COMPOSE_PROJECT_NAME in
docker/.env). Beside the tool, the file is checked the way compose checks it, with what we have:
- parsed as YAML and interpolated the way compose does (`${VAR}`, `${VAR:-default}`, `${VAR:?error}`), with the
  variables of docker/.env.example filled in — an unset required variable fails, as it does for compose;
- validated against the Compose Specification's JSON schema (compose-spec.schema.json beside this file: the
  schema compose-go validates with, as shipped by the npm package dclint 3.1.0);
- cross-checked: every depends_on names a service, named volumes are declared, the build context and
  Dockerfile exist, every smsmeter command line parses with our CLI and every service's settings load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from config import load_settings
from smsmeter.cli import _parser

ROOT = Path(__file__).parents[3]
DOCKER = ROOT / "docker"
SCHEMA = Path(__file__).with_name("compose-spec.schema.json")
EXAMPLE_ENV = {
    "SMSMETER_MASTER_KEY": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    "POSTGRES_PASSWORD": "pg-secret",
    "SMSMETER_SMPP_PASSWORD": "smpp-secret",
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$\$")


class _MissingVariable(Exception):
    pass


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation over every string of the document."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-") and unset:
            return arg or ""
        if op in (":?", "?") and unset:
            raise _MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def _env_file() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _compose(env: dict[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load((DOCKER / "compose.yaml").read_text())  # YAML merge keys (<<) resolved here
    document: dict[str, Any] = _interpolate(raw, env)
    return document


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    document = _compose({**_env_file(), **EXAMPLE_ENV})
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    assert [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors] == []

    services = document["services"]
    assert {"postgres", "migrate", "smsc", "smsmeter", "web", "gateway", "scheduler"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in document.get("volumes", {}), f"{name}: volume {source} is not declared"
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file()
    assert services["migrate"]["restart"] == "no"
    assert services["smsmeter"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["gateway"]["deploy"]["replicas"] == 2


def test_every_smsmeter_service_would_start_with_its_command_and_settings() -> None:
    document = _compose({**_env_file(), **EXAMPLE_ENV})
    parser = _parser()
    services = document["services"].items()
    smsmeter_services = {n: s for n, s in services if str(s.get("image", "")).startswith("smsmeter")}
    assert len(smsmeter_services) == 6
    for name, service in smsmeter_services.items():
        args = parser.parse_args(service["command"])  # exits (SystemExit) on an unknown command or option
        assert args.command in ("serve", "db", "simulate"), name
        settings = load_settings(None, {k: str(v) for k, v in service["environment"].items()})
        assert settings.database.url.startswith("postgresql+asyncpg://smsmeter:pg-secret@postgres:5432/")
        assert settings.master_key is not None
        assert service["read_only"] is True
        assert "ALL" in service["cap_drop"]


def test_secrets_have_no_defaults() -> None:
    with pytest.raises(_MissingVariable, match="SMSMETER_MASTER_KEY"):
        _compose({**_env_file(), **{k: v for k, v in EXAMPLE_ENV.items() if k != "SMSMETER_MASTER_KEY"}})
    with pytest.raises(_MissingVariable):
        _compose(_env_file())  # .env.example leaves every secret empty


def test_the_image_holds_every_package_and_runs_as_non_root() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, f"the image build leaves out {package}"
    assert dockerfile.count("FROM python:3.11-slim") == 2  # a build stage and a slim runtime
    assert "USER 10001:10001" in dockerfile
    assert "pip install --no-cache-dir --no-index" in dockerfile  # the runtime installs only the built wheels
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".git" in ignored
    assert "tests" in ignored


def _compose_command() -> list[str] | None:
    """`docker compose` when the v2 plugin works, else `docker-compose` (v1), else None."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = _compose_command()
    if command is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(
                "neither `docker compose` nor `docker-compose` is installed (scripts/test installs docker-compose)"
            )
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    return command


def _config(compose: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    # Only PATH and HOME from our environment: a variable set here must not stand in for the env file.
    return subprocess.run(
        [*compose, "--env-file", str(env_file), "-f", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
    )


def test_docker_compose_config_accepts_the_file(compose: list[str], tmp_path: Path) -> None:
    result = _config(compose, tmp_path, EXAMPLE_ENV)
    assert result.returncode == 0, f"{' '.join(compose)} config: {result.stderr}"
    resolved = yaml.safe_load(result.stdout)
    assert {"postgres", "migrate", "smsc", "smsmeter", "web", "gateway", "scheduler"} <= set(resolved["services"])
    environment = resolved["services"]["smsmeter"]["environment"]
    assert environment["SMSMETER_MASTER_KEY"] == EXAMPLE_ENV["SMSMETER_MASTER_KEY"]
    assert environment["SMSMETER_DATABASE_URL"] == "postgresql://smsmeter:pg-secret@postgres:5432/smsmeter"


def test_docker_compose_config_refuses_a_missing_secret(compose: list[str], tmp_path: Path) -> None:
    result = _config(compose, tmp_path, {k: v for k, v in EXAMPLE_ENV.items() if k != "SMSMETER_MASTER_KEY"})
    assert result.returncode != 0
    assert "SMSMETER_MASTER_KEY" in result.stderr
