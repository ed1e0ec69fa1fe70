"""A command's states and the rules that move it: the four-state handshake, its failures and retries.

Pure: states, outcomes and times in, decisions out. The dispatcher and the inbound path persist what
these rules decide; nothing here touches a database, a transport or the clock.

    0:0 sending ──submit_sm_resp OK, every part──▶ 0:1 accepted ──receipt DELIVRD, every part──▶ 1:0 received
       │                                             │                                           │
       └──────────────────── the meter's authenticated acknowledgement ──────────────────────────┴─▶ 1:1 processed

States only move forward (`can_move`): a late receipt never moves 1:1 back to 1:0, an acknowledgement
that overtakes its receipts moves 0:1 straight to 1:1. A retry is not a transition: the command keeps
its state, its frame and its counter, and the same bytes go out again, so the meter deduplicates.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class CommandState(enum.StrEnum):
    SENDING = "0:0"
    ACCEPTED = "0:1"  # every part accepted by the SMSC (submit_sm_resp OK)
    DELIVERED = "1:0"  # every part delivered to the meter (delivery receipts)
    PROCESSED = "1:1"  # the meter's authenticated acknowledgement: applied (or applied before: duplicate)
    REJECTED_SMSC = "rejected_smsc"  # the SMSC refused the submit with a permanent status
    UNDELIVERABLE = "undeliverable"  # receipts said UNDELIV / REJECTD / DELETED, attempts exhausted
    EXPIRED = "expired"  # receipts said EXPIRED (validity period over), attempts exhausted
    REJECTED_METER = "rejected_meter"  # the meter refused it; `result_reason` says why
    TIMED_OUT = "timed_out"  # no acknowledgement within the ack timeout, attempts exhausted
    FAILED = "failed"  # could not be handed to the SMSC in `max_attempts` attempts
    CANCELLED = "cancelled"  # by an operator, or because the command it depended on did not succeed

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_failure(self) -> bool:
        return self in FINAL_STATES and self is not CommandState.PROCESSED


FINAL_STATES = frozenset(
    {
        CommandState.PROCESSED,
        CommandState.REJECTED_SMSC,
        CommandState.UNDELIVERABLE,
        CommandState.EXPIRED,
        CommandState.REJECTED_METER,
        CommandState.TIMED_OUT,
        CommandState.FAILED,
        CommandState.CANCELLED,
    }
)
OPEN_STATES = frozenset(set(CommandState) - FINAL_STATES)  # 0:0, 0:1, 1:0

_RANK = {CommandState.SENDING: 0, CommandState.ACCEPTED: 1, CommandState.DELIVERED: 2}


def rank(state: CommandState) -> int:
    """0:0 → 0, 0:1 → 1, 1:0 → 2, every final state → 3."""
    return _RANK.get(state, 3)


def can_move(current: CommandState, target: CommandState) -> bool:
    """True when `current` → `target` moves forward: never out of a final state, never to a lower rank."""
    return not current.is_final and rank(target) > rank(current)


def predecessors(target: CommandState) -> frozenset[CommandState]:
    """Every state from which `target` may be reached (for conditional updates: `WHERE state IN (...)`)."""
    return frozenset(s for s in CommandState if can_move(s, target))


class Source(enum.StrEnum):
    """Who caused a transition (command_history.source)."""

    OUTBOX = "outbox"
    DISPATCHER = "dispatcher"
    SMSC = "smsc"
    RECEIPT = "receipt"
    METER = "meter"
    TIMER = "timer"
    OPERATOR = "operator"


# SMPP 3.4 command_status values that say "not now", not "never": the same submit may succeed later.
TRANSIENT_SMSC_STATUSES = frozenset(
    {
        0x00000008,  # ESME_RSYSERR
        0x00000014,  # ESME_RMSGQFUL
        0x00000058,  # ESME_RTHROTTLED
        0x00000064,  # ESME_RX_T_APPN (temporary application error)
    }
)


class ReceiptOutcome(enum.Enum):
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    PENDING = "pending"  # intermediate (ENROUTE, ACCEPTD): nothing to decide yet


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    ack_timeout_s: float = 3600.0

    def backoff_s(self, attempts: int) -> float:
        """The wait after the `attempts`-th attempt: base, 2·base, 4·base … capped at `retry_max_s`."""
        return float(min(self.retry_max_s, self.retry_base_s * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a command: move it to `state` (None: keep its state) and/or send it again at
    `retry_at` (None: no resend planned). `detail` goes to the history row."""

    state: CommandState | None
    retry_at: datetime | None
    detail: str


def after_submit_failure(
    attempts: int, policy: RetryPolicy, now: datetime, *, status: int | None, reason: str
) -> Decision:
    """A submit that did not reach the SMSC (status None: not connected, timed out) or was refused
    (`status`). Permanent refusals end the command; anything else is retried until attempts run out."""
    if status is not None and status not in TRANSIENT_SMSC_STATUSES:
        return Decision(CommandState.REJECTED_SMSC, None, f"SMSC status 0x{status:08x} {reason}".rstrip())
    if attempts >= policy.max_attempts:
        return Decision(CommandState.FAILED, None, f"{attempts} attempts, last: {reason}")
    retry_at = now + timedelta(seconds=policy.backoff_s(attempts))
    return Decision(None, retry_at, f"attempt {attempts} not accepted ({reason}); retry")


def after_throttle(now: datetime, pause_s: float) -> Decision:
    """ESME_RTHROTTLED / ESME_RMSGQFUL or no bind: not the message's fault; does not use up an attempt."""
    return Decision(None, now + timedelta(seconds=pause_s), "throttled; retry")


def after_failed_receipt(
    state: CommandState, outcome: ReceiptOutcome, attempts: int, policy: RetryPolicy, now: datetime
) -> Decision:
    """A receipt saying a part did not reach the meter. Retry while attempts remain, else final."""
    if state.is_final or rank(state) >= rank(CommandState.DELIVERED):
        return Decision(None, None, f"late {outcome.value} receipt ignored in state {state}")
    if attempts >= policy.max_attempts:
        final = CommandState.EXPIRED if outcome is ReceiptOutcome.EXPIRED else CommandState.UNDELIVERABLE
        return Decision(final, None, f"{outcome.value} after {attempts} attempts")
    retry_at = now + timedelta(seconds=policy.backoff_s(attempts))
    return Decision(None, retry_at, f"{outcome.value} receipt on attempt {attempts}; retry")


def after_ack_deadline(state: CommandState, attempts: int, policy: RetryPolicy) -> Decision:
    """No acknowledgement within the ack timeout of the last send: resend, or time out."""
    if state.is_final:
        return Decision(None, None, "already final")
    if attempts >= policy.max_attempts:
        return Decision(CommandState.TIMED_OUT, None, f"no acknowledgement after {attempts} attempts")
    return Decision(None, None, f"no acknowledgement to attempt {attempts}; resend")


def receipt_outcome(stat: str) -> ReceiptOutcome:
    """Map a receipt's final state (SMPP 3.4 message_state name / `stat:` text) to an outcome."""
    code = stat.upper()
    if code == "DELIVRD":
        return ReceiptOutcome.DELIVERED
    if code == "EXPIRED":
        return ReceiptOutcome.EXPIRED
    if code in {"UNDELIV", "REJECTD", "DELETED", "UNKNOWN"}:
        return ReceiptOutcome.UNDELIVERABLE
    return ReceiptOutcome.PENDING


def ack_target(accepted: bool) -> CommandState:
    """The meter's answer: OK, or DUPLICATE with reason none (applied before) → 1:1; REJECTED, or
    DUPLICATE with a reason (refused the first time) → rejected_meter (docs/protocol.md §9)."""
    return CommandState.PROCESSED if accepted else CommandState.REJECTED_METER
