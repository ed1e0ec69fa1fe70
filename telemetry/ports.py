"""The port through which gateway, payments, billing and web report what they measure, without knowing Prometheus.

Every method is cheap and never raises; a part that was given no observer uses `NO_METRICS`.
Units are in the names: seconds are float seconds.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def sms_submitted(self, outcome: str, seconds: float) -> None:
        """One SMS part handed to the channel: outcome accepted | rejected | throttled | timeout | not_connected |
        error, and the time to the channel's answer (submit_sm_resp)."""

    def receipt_received(self, state: str) -> None:
        """A delivery receipt arrived (DELIVRD, UNDELIV, EXPIRED, ...)."""

    def inbound_received(self) -> None:
        """A mobile-originated SMS arrived (before it is judged a meter reply or a wrong SMS)."""

    def webhook_handled(self, provider: str, outcome: str) -> None:
        """A payment provider's webhook was answered. Outcome: what processing did (applied | recorded |
        duplicate | ignored | conflict), or why it did not (forged | stale | future | malformed |
        unknown_provider | deferred | error). `provider` is a configured name, "stripe", or "unknown"."""

    def notice_sent(self, channel: str, outcome: str) -> None:
        """One attempt to send a notice to a subscriber: channel sms | email; outcome sent | failed (a failed
        attempt may be retried later)."""

    def job_advanced(self, job: str, items: int) -> None:
        """A scheduled job committed `items` more (invoices issued, accounts swept, notices sent, ...)."""

    def job_running(self, job: str, running: bool) -> None:
        """A scheduled job's run started (True) or ended (False)."""


class _NoMetrics:
    def sms_submitted(self, outcome: str, seconds: float) -> None:
        pass

    def receipt_received(self, state: str) -> None:
        pass

    def inbound_received(self) -> None:
        pass

    def webhook_handled(self, provider: str, outcome: str) -> None:
        pass

    def notice_sent(self, channel: str, outcome: str) -> None:
        pass

    def job_advanced(self, job: str, items: int) -> None:
        pass

    def job_running(self, job: str, running: bool) -> None:
        pass


NO_METRICS: Observer = _NoMetrics()
