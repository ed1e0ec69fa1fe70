"""The master key that wraps meter keys at rest: from the settings, or made once in the data folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from config import ConfigError, Settings

KEY_FILE = "master.key"


def load_master_key(settings: Settings) -> bytes:
    """The configured key, else `<data_dir>/master.key`, created (mode 0600, 256 bits) when missing."""
    if settings.master_key is not None:
        return bytes.fromhex(settings.master_key.reveal())
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError("master_key", f"{path} does not hold a hexadecimal key") from None
    if len(key) not in (16, 32):
        raise ConfigError("master_key", f"{path} must hold 32 or 64 hexadecimal digits")
    return key
