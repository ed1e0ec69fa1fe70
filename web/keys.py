"""Typed application keys: everything a handler needs comes in through these, set by the composition root
(or by a test). `Services` is filled when the service starts, because the database engine and the
workers are resources of the cleanup context, made after the application is built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import aiohttp_jinja2  # noqa: F401 - the templates' environment lives under aiohttp_jinja2's own key
from aiohttp import web

from billing.service import BillingService
from billing.sms_text import SentText
from billing.sts_vending import TokenGenerator
from config import RadiusSettings, WebSettings
from gateway.keys import KeyRing
from store.uow import UnitOfWork


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class OtpSender(Protocol):
    """Sends a one-time sign-in code to a subscriber's phone by SMS."""

    async def __call__(self, phone: str, text: str) -> None: ...


class SmsOutbox(Protocol):
    """Every text SMS the simulated network was given for a person (sign-in codes, notices, receipts),
    newest first. Only with the simulated SMS network."""

    def __call__(self) -> Sequence[SentText]: ...


class Handset(Protocol):
    """A simulated phone sends a text SMS to the short number (only with the simulated SMS network)."""

    def __call__(self, phone: str, text: str) -> None: ...


class PasswordChecker(Protocol):
    """Checks a user name and password against RADIUS; returns the granted role or None when refused."""

    async def __call__(self, username: str, password: str) -> str | None: ...


@dataclass
class Services:
    """The running service's parts the shell calls. None until the service has started them."""

    uow: UnitOfWork | None = None
    keys: KeyRing | None = None  # meter keys, for sealing commands (gateway.outbox)
    radius: PasswordChecker | None = None
    otp_sender: OtpSender | None = None
    billing: BillingService | None = None  # the utility's billing policies (emergency credit, meter settings)
    sms_outbox: SmsOutbox | None = None  # the simulated SMS network's texts to people (its SMS outbox page)
    handset: Handset | None = None  # a simulated phone texting the short number (the SMS outbox page's form)
    sts: TokenGenerator | None = None  # STS keypad tokens (billing.sts_vending: software, or a security module)
    # Use cases of other areas, wired by the composition root by name (e.g. "issue_command").
    use_cases: dict[str, Callable[..., Awaitable[Any]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


SERVICES = web.AppKey("services", Services)
CLOCK = web.AppKey("clock", Clock)
WEB_SETTINGS = web.AppKey("web_settings", WebSettings)
RADIUS_SETTINGS = web.AppKey("radius_settings", RadiusSettings)
SESSION_KEY = web.AppKey("session_key", bytes)  # HMAC key for session ids and CSRF tokens
UTILITY_NAME = web.AppKey("utility_name", str)
CURRENCY = web.AppKey("currency", str)
