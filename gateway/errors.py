"""The gateway's errors. One root, `GatewayError`; each subclass carries its reason as attributes."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises."""


class TransportError(GatewayError):
    """A transport could not hand a part to the network."""


class NotConnected(TransportError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"transport not connected: {reason}")
        self.reason = reason


class SubmitTimeout(TransportError):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"no submit response within {timeout_s} s")
        self.timeout_s = timeout_s


class SmscRejected(TransportError):
    """The SMSC answered the submit with a non-zero command_status."""

    def __init__(self, status: int, name: str = "") -> None:
        super().__init__(f"SMSC rejected the submit: status 0x{status:08x} {name}".rstrip())
        self.status = status
        self.name = name


class Throttled(SmscRejected):
    """ESME_RTHROTTLED (0x58) or ESME_RMSGQFUL (0x14): retry later, it is not the message's fault."""


class BindRejected(TransportError):
    """The SMSC refused the bind (wrong system_id, password or system_type): a configuration error."""

    def __init__(self, status: int) -> None:
        super().__init__(f"SMSC refused the bind: status 0x{status:08x}")
        self.status = status
