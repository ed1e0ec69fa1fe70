"""A real FreeRADIUS (Debian `freeradius` 3.2) for the tests: a private configuration copied from the
system's, listening on 127.0.0.1 on a free UDP port, PAP users from `users`, replies signed with a
Message-Authenticator. Started with `-X` (foreground, debug) and ready in about a tenth of a second."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SYSTEM_CONFIG = Path("/etc/freeradius/3.0")
BINARY = shutil.which("freeradius") or "/usr/sbin/freeradius"
# Modules the minimal site does not use and that want files or certificates of their own.
_DROP_MODULES = ("eap",)


@dataclass(frozen=True)
class RadiusServer:
    host: str
    port: int
    secret: str
    log_path: Path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available() -> bool:
    return Path(BINARY).exists() and SYSTEM_CONFIG.is_dir()


def _write_config(root: Path, port: int, secret: str, users: Mapping[str, tuple[str, str | None]]) -> Path:
    config = root / "raddb"
    shutil.copytree(SYSTEM_CONFIG, config, symlinks=True)
    (root / "log").mkdir()
    (root / "run").mkdir()
    text = (config / "radiusd.conf").read_text()
    text = re.sub(r"^\s*(user|group)\s*=.*$", "", text, flags=re.M)
    text = re.sub(r"^logdir = .*$", f"logdir = {root / 'log'}", text, flags=re.M)
    text = re.sub(r"^raddbdir = .*$", f"raddbdir = {config}", text, flags=re.M)
    text = re.sub(r"^run_dir = .*$", f"run_dir = {root / 'run'}", text, flags=re.M)
    (config / "radiusd.conf").write_text(text)
    for site in (config / "sites-enabled").iterdir():
        site.unlink()
    for module in _DROP_MODULES:
        (config / "mods-enabled" / module).unlink(missing_ok=True)
    (config / "clients.conf").write_text(
        f"client localhost {{\n  ipaddr = 127.0.0.1\n  secret = {secret}\n  require_message_authenticator = yes\n}}\n"
    )
    lines = []
    for name, (password, role) in users.items():
        lines.append(f'"{name}" Cleartext-Password := "{password}"')
        lines.append(f'\tClass := "role={role}"' if role else '\tReply-Message := "welcome"')
        lines.append("")
    authorize = config / "mods-config" / "files" / "authorize"
    authorize.unlink(missing_ok=True)
    authorize.write_text("\n".join(lines) + "\n")
    (config / "sites-enabled" / "smsmeter").write_text(
        "server smsmeter {\n"
        "  listen {\n"
        "    type = auth\n"
        "    ipaddr = 127.0.0.1\n"
        f"    port = {port}\n"
        "  }\n"
        "  authorize {\n"
        "    files\n"
        "    pap\n"
        "  }\n"
        "  authenticate {\n"
        "    Auth-Type PAP {\n"
        "      pap\n"
        "    }\n"
        "  }\n"
        "  post-auth {\n"
        "    update reply {\n"
        "      Message-Authenticator := 0x00\n"
        "    }\n"
        "    Post-Auth-Type REJECT {\n"
        "      update reply {\n"
        "        Message-Authenticator := 0x00\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "}\n"
    )
    return config


@contextmanager
def running_freeradius(
    root: Path,
    users: Mapping[str, tuple[str, str | None]],
    secret: str = "testing123-smsmeter",
    ready_timeout_s: float = 15,
) -> Iterator[RadiusServer]:
    """FreeRADIUS with `users` (name → (password, role for the Class attribute or None))."""
    port = free_udp_port()
    config = _write_config(root, port, secret, users)
    log_path = root / "freeradius.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [BINARY, "-X", "-d", str(config)], stdout=log_file, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + ready_timeout_s
            while "Ready to process requests" not in log_path.read_text(errors="replace"):
                if process.poll() is not None:
                    raise RuntimeError(f"freeradius exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"freeradius not ready in {ready_timeout_s} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.05)
            yield RadiusServer("127.0.0.1", port, secret, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
