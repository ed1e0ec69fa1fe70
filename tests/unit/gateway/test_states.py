"""The pure state rules: forward-only moves, retries with backoff, final states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.states import (
    FINAL_STATES,
    CommandState,
    ReceiptOutcome,
    RetryPolicy,
    after_ack_deadline,
    after_failed_receipt,
    after_submit_failure,
    after_throttle,
    can_move,
    predecessors,
    rank,
    receipt_outcome,
)

S = CommandState
NOW = datetime(2026, 11, 22, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, retry_base_s=30, retry_max_s=100, ack_timeout_s=600)


def test_the_handshake_moves_forward_only() -> None:
    assert can_move(S.SENDING, S.ACCEPTED)
    assert can_move(S.ACCEPTED, S.DELIVERED)
    assert can_move(S.DELIVERED, S.PROCESSED)
    assert can_move(S.SENDING, S.PROCESSED)  # an acknowledgement may overtake submit_sm_resp and receipts
    assert can_move(S.ACCEPTED, S.PROCESSED)
    assert not can_move(S.DELIVERED, S.ACCEPTED)  # a late submit_sm_resp
    assert not can_move(S.PROCESSED, S.DELIVERED)  # a late receipt never moves 1:1 back
    assert not can_move(S.ACCEPTED, S.ACCEPTED)


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
def test_nothing_leaves_a_final_state(final: CommandState) -> None:
    assert final.is_final
    assert rank(final) == 3
    assert not any(can_move(final, target) for target in CommandState)


def test_predecessors_are_the_states_an_update_may_start_from() -> None:
    assert predecessors(S.ACCEPTED) == {S.SENDING}
    assert predecessors(S.DELIVERED) == {S.SENDING, S.ACCEPTED}
    assert predecessors(S.PROCESSED) == {S.SENDING, S.ACCEPTED, S.DELIVERED}
    assert predecessors(S.TIMED_OUT) == {S.SENDING, S.ACCEPTED, S.DELIVERED}
    assert S.PROCESSED.is_final
    assert not S.PROCESSED.is_failure
    assert S.FAILED.is_failure


def test_backoff_doubles_and_is_capped() -> None:
    assert [POLICY.backoff_s(n) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_a_permanent_smsc_status_ends_the_command() -> None:
    decision = after_submit_failure(1, POLICY, NOW, status=0x0B, reason="ESME_RINVDSTADR")
    assert decision.state is S.REJECTED_SMSC
    assert decision.retry_at is None
    assert "0x0000000b" in decision.detail


def test_transient_failures_retry_until_the_attempts_run_out() -> None:
    first = after_submit_failure(1, POLICY, NOW, status=0x08, reason="ESME_RSYSERR")
    assert (first.state, first.retry_at) == (None, NOW + timedelta(seconds=30))
    timeout = after_submit_failure(2, POLICY, NOW, status=None, reason="no submit_sm_resp")
    assert timeout.retry_at == NOW + timedelta(seconds=60)
    last = after_submit_failure(3, POLICY, NOW, status=None, reason="no submit_sm_resp")
    assert (last.state, last.retry_at) == (S.FAILED, None)


def test_throttling_only_pauses() -> None:
    assert after_throttle(NOW, 2.5).retry_at == NOW + timedelta(seconds=2.5)
    assert after_throttle(NOW, 2.5).state is None


def test_failed_receipts_retry_then_end_as_undeliverable_or_expired() -> None:
    retry = after_failed_receipt(S.ACCEPTED, ReceiptOutcome.UNDELIVERABLE, 1, POLICY, NOW)
    assert (retry.state, retry.retry_at) == (None, NOW + timedelta(seconds=30))
    assert after_failed_receipt(S.ACCEPTED, ReceiptOutcome.EXPIRED, 3, POLICY, NOW).state is S.EXPIRED
    assert after_failed_receipt(S.SENDING, ReceiptOutcome.UNDELIVERABLE, 3, POLICY, NOW).state is S.UNDELIVERABLE
    late = after_failed_receipt(S.PROCESSED, ReceiptOutcome.UNDELIVERABLE, 3, POLICY, NOW)
    assert (late.state, late.retry_at) == (None, None)
    delivered = after_failed_receipt(S.DELIVERED, ReceiptOutcome.EXPIRED, 1, POLICY, NOW)
    assert (delivered.state, delivered.retry_at) == (None, None)


def test_no_acknowledgement_resends_then_times_out() -> None:
    assert after_ack_deadline(S.ACCEPTED, 1, POLICY).state is None
    assert after_ack_deadline(S.DELIVERED, 3, POLICY).state is S.TIMED_OUT
    assert after_ack_deadline(S.PROCESSED, 3, POLICY).state is None


@pytest.mark.parametrize(
    ("stat", "outcome"),
    [
        ("DELIVRD", ReceiptOutcome.DELIVERED),
        ("delivrd", ReceiptOutcome.DELIVERED),
        ("EXPIRED", ReceiptOutcome.EXPIRED),
        ("UNDELIV", ReceiptOutcome.UNDELIVERABLE),
        ("REJECTD", ReceiptOutcome.UNDELIVERABLE),
        ("DELETED", ReceiptOutcome.UNDELIVERABLE),
        ("ENROUTE", ReceiptOutcome.PENDING),
        ("ACCEPTD", ReceiptOutcome.PENDING),
    ],
)
def test_receipt_states_map_to_outcomes(stat: str, outcome: ReceiptOutcome) -> None:
    assert receipt_outcome(stat) is outcome
