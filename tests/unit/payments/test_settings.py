"""The [payments] settings: a table of provider secrets, validated, never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError
from config.settings import load_settings


def test_providers_from_toml_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[payments]\nreplay_window_s = 120\n[payments.providers]\nbank = "bank-secret-0123456789"\n')
    settings = load_settings(path, {})
    assert settings.payments.providers["bank"].reveal() == "bank-secret-0123456789"
    assert settings.payments.replay_window_s == 120
    env = {"SMSMETER_PAYMENTS_PROVIDERS": "mpesa=mpesa-secret-0123456789, kiosk=kiosk-secret-0123456789"}
    settings = load_settings(None, env)
    assert sorted(settings.payments.providers) == ["kiosk", "mpesa"]
    assert "secret" not in repr(settings.payments)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"SMSMETER_PAYMENTS_PROVIDERS": "mpesa=short"}, "at least 16"),
        ({"SMSMETER_PAYMENTS_PROVIDERS": "Bad Name=0123456789abcdef01"}, "bad provider name"),
        ({"SMSMETER_PAYMENTS_PROVIDERS": "nonsense"}, "name=value"),
        ({"SMSMETER_PAYMENTS_RECONCILE_AT": "25:00"}, "HH:MM"),
        ({"SMSMETER_PAYMENTS_TOPUP_AMOUNTS_MINOR": "10,abc"}, "comma-separated"),
    ],
)
def test_bad_payment_settings_name_the_key(env: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env)
    assert reason in str(err.value)
    assert "short" not in str(err.value) or "at least" in str(err.value)
