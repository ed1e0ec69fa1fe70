"""Alarm rules: which rules an alarm matches, who is told and by which channel, and whether its automatic
action runs now, waits for friendly hours, or does not run. Pure: the alarm, the rules, the operators'
contacts, the calendar and the time are handed in."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from billing.errors import InvalidField
from billing.rules.arrears import FriendlyCalendar

ANY_KIND = "*"
MAX_RECIPIENTS = 20
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?\d{6,15}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,29}|\*")


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return (Severity.INFO, Severity.WARNING, Severity.CRITICAL).index(self)


class AutoAction(enum.StrEnum):
    NONE = "none"
    RELAY_OFF = "relay_off"  # disconnect the meter that raised the alarm (e.g. on tamper)


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class AlarmRule:
    id: int
    name: str
    kind: str  # an alarm kind, or "*" for any
    min_severity: Severity
    email: bool
    sms: bool
    role: str | None  # the operators of this role are told too
    recipients: tuple[str, ...]  # e-mail addresses and phone numbers
    action: AutoAction = AutoAction.NONE
    enabled: bool = True

    def matches(self, kind: str, severity: str) -> bool:
        return self.enabled and self.kind in (ANY_KIND, kind) and _severity(severity).rank >= self.min_severity.rank


@dataclass(frozen=True, slots=True)
class Contact:
    """An operator as alarm rules reach them."""

    username: str
    role: str
    email: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: Channel
    address: str


@dataclass(frozen=True, slots=True)
class ActionDecision:
    action: AutoAction
    run_now: bool
    reason: str  # why it waits or does not run ("" when it runs now)

    @property
    def pending(self) -> bool:
        return self.action is not AutoAction.NONE and not self.run_now and self.reason in _WAITING


_WAITING = frozenset({"night", "weekend", "holiday"})


def _severity(value: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        return Severity.WARNING


def is_email(address: str) -> bool:
    return _EMAIL.fullmatch(address) is not None


def is_phone(address: str) -> bool:
    return _PHONE.fullmatch(address) is not None


def check_rule(
    *, name: str, kind: str, min_severity: str, email: bool, sms: bool, role: str | None, recipients: Sequence[str]
) -> tuple[str, Severity, tuple[str, ...]]:
    """The rule's name, severity and recipients, checked. Raises InvalidField."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidField("name", "1 to 100 characters")
    if _KIND.fullmatch(kind) is None:
        raise InvalidField("kind", "an alarm kind (tamper, command_failed, …) or * for any")
    try:
        severity = Severity(min_severity)
    except ValueError:
        raise InvalidField("min_severity", "info, warning or critical") from None
    cleaned = tuple(dict.fromkeys(r.strip() for r in recipients if r.strip()))
    if len(cleaned) > MAX_RECIPIENTS:
        raise InvalidField("recipients", f"at most {MAX_RECIPIENTS}")
    for address in cleaned:
        if not (is_email(address) or is_phone(address)):
            raise InvalidField("recipients", f"{address!r} is neither an e-mail address nor a phone number")
    if not (email or sms):
        raise InvalidField("channels", "choose e-mail, SMS or both")
    if not cleaned and not role:
        raise InvalidField("recipients", "name recipients or a role")
    return name, severity, cleaned


def matching_rules(rules: Iterable[AlarmRule], kind: str, severity: str) -> list[AlarmRule]:
    return [rule for rule in rules if rule.matches(kind, severity)]


def deliveries(rules: Iterable[AlarmRule], contacts: Iterable[Contact]) -> list[Delivery]:
    """Each address once per channel, whichever rules name it (directly or through a role)."""
    contacts = list(contacts)
    out: dict[Delivery, None] = {}
    for rule in rules:
        addresses = list(rule.recipients)
        if rule.role:
            for c in contacts:
                if c.role == rule.role:
                    addresses += [a for a in (c.email, c.phone) if a]
        for address in addresses:
            if rule.email and is_email(address):
                out[Delivery(Channel.EMAIL, address)] = None
            if rule.sms and is_phone(address):
                out[Delivery(Channel.SMS, address)] = None
    return list(out)


def decide_action(
    rules: Iterable[AlarmRule],
    *,
    meter_id: int | None,
    enabled: bool,
    calendar: FriendlyCalendar,
    now: datetime,
) -> ActionDecision:
    """The automatic action the matching rules ask for: it runs only when the utility enables automatic
    actions, only on a meter, and only within friendly hours (else it waits for them)."""
    wanted = next((rule.action for rule in rules if rule.action is not AutoAction.NONE), AutoAction.NONE)
    if wanted is AutoAction.NONE:
        return ActionDecision(AutoAction.NONE, False, "")
    if not enabled:
        return ActionDecision(wanted, False, "automatic actions are not enabled")
    if meter_id is None:
        return ActionDecision(wanted, False, "the alarm names no meter")
    why_not = calendar.why_not(now)
    if why_not is not None:
        return ActionDecision(wanted, False, why_not)
    return ActionDecision(wanted, True, "")


def alarm_text(*, utility: str, kind: str, severity: str, meter: str | None, detail: str | None) -> tuple[str, str]:
    """The subject and body of an alarm notice (short enough for one SMS when the detail is)."""
    where = f" on meter {meter}" if meter else ""
    subject = f"{utility}: {severity} alarm {kind}{where}"
    body = subject + (f": {detail}" if detail else "")
    return subject[:300], body[:500]
