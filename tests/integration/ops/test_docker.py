"""docker/: the compose file is what `docker compose config` would accept, and every service in it would start.

`docker compose config` needs the compose plugin, which this machine's Docker CLI lacks (and there is no engine
here to build or run the image). So the file is checked the same way the plugin checks it, with what we have:
- parsed as YAML and interpolated the way compose does (`${VAR}`, `${VAR:-default}`, `${VAR:?error}`), with the
  variables of docker/.env.example filled in — an unset required variable fails, as it does for compose;
- validated against the Compose Specification's JSON schema (compose-spec.schema.json beside this file: the
  schema compose-go validates with, as shipped by the npm package dclint 3.1.0);
- cross-checked: every depends_on names a service, named volumes are declared, the build context and
  Dockerfile exist, every smsmeter command line parses with our CLI and every service's settings load.
When a working `docker compose` is on PATH, the last test also runs `docker compose config` itself.
"""

from __future__ import annotations

import json
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


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed here")
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in EXAMPLE_ENV.items()))
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(env_file), "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
