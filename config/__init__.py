"""Configuration: typed, frozen settings and the one loader (defaults < TOML file < SMSMETER_* environment).

Only the composition root calls `load_settings`, handing it the environment; nothing else reads it.
"""

from config.errors import ConfigError
from config.settings import (
    BillingSettings,
    DatabaseSettings,
    HttpSettings,
    ModemSettings,
    RadiusSettings,
    RetentionSettings,
    Secret,
    Settings,
    SimulatorSettings,
    SmppSettings,
    SmtpSettings,
    StripeSettings,
    WebSettings,
    load_settings,
)

__all__ = [
    "BillingSettings",
    "ConfigError",
    "DatabaseSettings",
    "HttpSettings",
    "ModemSettings",
    "RadiusSettings",
    "RetentionSettings",
    "Secret",
    "Settings",
    "SimulatorSettings",
    "SmppSettings",
    "SmtpSettings",
    "StripeSettings",
    "WebSettings",
    "load_settings",
]
