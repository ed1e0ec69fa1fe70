"""Configuration errors. The message names the key and the reason, never a secret's value."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration value is missing, malformed or out of range."""

    def __init__(self, key: str, reason: str) -> None:
        where = key
        if key and key.replace(".", "_").replace("_", "").isalnum() and not key.startswith("SMSMETER_"):
            where = f"{key} (SMSMETER_{key.replace('.', '_').upper()})"
        super().__init__(f"configuration error: {where}: {reason}")
        self.key = key
        self.reason = reason
