"""Configuration: typed, frozen settings and the one loader (defaults < TOML file < SMSMETER_* environment).

Only the composition root calls `load_settings`, handing it the environment; nothing else reads it.
"""

from config.errors import ConfigError
from config.settings import (
    DatabaseSettings,
    HttpSettings,
    ModemSettings,
    RadiusSettings,
    Secret,
    Settings,
    SimulatorSettings,
    SmppSettings,
    StripeSettings,
    WebSettings,
    load_settings,
)

__all__ = [
    "ConfigError",
    "DatabaseSettings",
    "HttpSettings",
    "ModemSettings",
    "RadiusSettings",
    "Secret",
    "Settings",
    "SimulatorSettings",
    "SmppSettings",
    "StripeSettings",
    "WebSettings",
    "load_settings",
]
