"""The gateway's errors. One root, `GatewayError`; each subclass carries its reason as attributes."""

from __future__ import annotations

import asyncio


class GatewayError(Exception):
    """Root of every error the gateway raises."""


class Stopped(GatewayError):
    """Handed something after it stopped (a receipt or an SMS arriving while the gateway shuts down): not taken,
    so the SMSC delivers it again, to this gateway's next start or to another gateway."""

    def __init__(self, part: str) -> None:
        super().__init__(f"the gateway's {part} has stopped")
        self.part = part


class TransportError(GatewayError):
    """A transport could not hand a part to the network."""


class NotConnected(TransportError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"transport not connected: {reason}")
        self.reason = reason


class SubmitTimeout(TransportError):
    """No submit response in time. When the part did go out (it is not known whether the SMSC took it),
    `late` is a future that gets the SMSC's message id should the response still come (cancelled when
    it does not, or says no): the SMSC may have taken the part, and its receipt will name that id."""

    def __init__(self, timeout_s: float, late: asyncio.Future[str] | None = None) -> None:
        super().__init__(f"no submit response within {timeout_s} s")
        self.timeout_s = timeout_s
        self.late = late


class SmscRejected(TransportError):
    """The SMSC answered the submit with a non-zero command_status."""

    def __init__(self, status: int, name: str = "") -> None:
        super().__init__(f"SMSC rejected the submit: status 0x{status:08x} {name}".rstrip())
        self.status = status
        self.name = name


class Throttled(SmscRejected):
    """ESME_RTHROTTLED (0x58) or ESME_RMSGQFUL (0x14): retry later, it is not the message's fault."""


class InvalidPart(TransportError):
    """The part cannot be one SMS (too long, or not a phone number): resending it will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a valid SMS part: {reason}")
        self.reason = reason


class BindRejected(TransportError):
    """The SMSC refused the bind (wrong system_id, password or system_type): a configuration error."""

    def __init__(self, status: int) -> None:
        super().__init__(f"SMSC refused the bind: status 0x{status:08x}")
        self.status = status


class OutboxError(GatewayError):
    """A command could not be written to the outbox."""


class UnknownMeter(OutboxError):
    def __init__(self, meter_id: int) -> None:
        super().__init__(f"no active meter with id {meter_id}")
        self.meter_id = meter_id


class MeterKeyMissing(OutboxError):
    """The meter has no stored key for the key id in force (or it does not unwrap under the master key)."""

    def __init__(self, meter_id: int, key_id: int, reason: str = "no stored key") -> None:
        super().__init__(f"meter {meter_id} key {key_id}: {reason}")
        self.meter_id = meter_id
        self.key_id = key_id
        self.reason = reason


class NotACommand(OutboxError):
    """Only head-end → meter messages can be sent."""

    def __init__(self, message_type: str) -> None:
        super().__init__(f"{message_type} is not a head-end command")
        self.message_type = message_type


class UnknownDependency(OutboxError):
    def __init__(self, depends_on_id: int) -> None:
        super().__init__(f"the command this one depends on ({depends_on_id}) does not exist")
        self.depends_on_id = depends_on_id


class CommandNotFound(OutboxError):
    def __init__(self, command_id: int) -> None:
        super().__init__(f"no command {command_id}")
        self.command_id = command_id


class CannotCancel(OutboxError):
    def __init__(self, command_id: int, state: str) -> None:
        super().__init__(f"command {command_id} is {state}: only a command not yet sent can be cancelled")
        self.command_id = command_id
        self.state = state
