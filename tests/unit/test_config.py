"""The settings loader: precedence, types, validation, secrets."""

from pathlib import Path

import pytest

from config import ConfigError, Secret, load_settings
from config.settings import TransportKind

EXAMPLE = Path(__file__).parents[2] / "config" / "smsmeter.example.toml"


def test_defaults_need_no_configuration() -> None:
    settings = load_settings(None, {})
    assert settings.database.url == "sqlite+aiosqlite:///var/smsmeter.db"
    assert settings.database.is_sqlite
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)
    assert settings.transport is TransportKind.SIMULATOR
    assert settings.master_key is None


def test_example_file_loads_and_matches_the_defaults() -> None:
    assert load_settings(EXAMPLE, {}) == load_settings(None, {})


def test_environment_beats_file_beats_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('short_number = "1234"\n[http]\nport = 9000\nhost = "0.0.0.0"\n')
    settings = load_settings(toml, {"SMSMETER_HTTP_PORT": "9100"})
    assert settings.http.port == 9100
    assert settings.http.host == "0.0.0.0"
    assert settings.short_number == "1234"


def test_config_file_from_environment(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text("[smpp]\nwindow = 8\n")
    assert load_settings(None, {"SMSMETER_CONFIG": str(toml)}).smpp.window == 8


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"SMSMETER_HTTP_PORT": "eighty"}, "http.port"),
        ({"SMSMETER_HTTP_PORT": "70000"}, "http.port"),
        ({"SMSMETER_TRANSPORT": "pigeon"}, "transport"),
        ({"SMSMETER_SHORT_NUMBER": "12ab"}, "short_number"),
        ({"SMSMETER_MASTER_KEY": "not-hex"}, "master_key"),
        ({"SMSMETER_SIMULATOR_LOSS_RATE": "1.5"}, "simulator.loss_rate"),
        ({"SMSMETER_DATABASE_ECHO": "maybe"}, "database.echo"),
        ({"SMSMETER_UTILITY_HEAT_UNIT": "MJ"}, "utility.heat_unit"),
        ({"SMSMETER_TRANSPORT": "smpp"}, "smpp.system_id"),
        ({"SMSMETER_NO_SUCH_THING": "1"}, "SMSMETER_NO_SUCH_THING"),
    ],
)
def test_bad_values_name_their_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ)
    assert err.value.key == key
    assert key in str(err.value)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text("[http]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"http\.prot"):
        load_settings(toml, {})


def test_broken_and_missing_files(tmp_path: Path) -> None:
    broken = tmp_path / "b.toml"
    broken.write_text("[http\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, {})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "none.toml", {})


def test_secrets_never_show() -> None:
    settings = load_settings(
        None,
        {
            "SMSMETER_SMPP_PASSWORD": "hunter2",
            "SMSMETER_STRIPE_WEBHOOK_SECRET": "whsec_topsecret",
            "SMSMETER_MASTER_KEY": "00" * 16,
        },
    )
    assert isinstance(settings.smpp.password, Secret)
    assert settings.smpp.password.reveal() == "hunter2"
    shown = repr(settings) + str(settings)
    assert "hunter2" not in shown
    assert "whsec_topsecret" not in shown
    assert "00" * 16 not in shown


def test_bad_secret_is_not_quoted_in_the_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"SMSMETER_MASTER_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in str(err.value)


def test_settings_are_frozen() -> None:
    settings = load_settings(None, {})
    with pytest.raises(AttributeError):
        settings.http.port = 1  # type: ignore[misc]


def test_postgres_urls_get_the_async_driver() -> None:
    settings = load_settings(None, {"SMSMETER_DATABASE_URL": "postgresql://u@h/db"})
    assert settings.database.url == "postgresql+asyncpg://u@h/db"
    assert not settings.database.is_sqlite
