"""A fleet loaded from the registry makes each reference meter when an SMS first reaches it: the meter comes in
the state it last reported, and one whose code fails its check is let go of with a warning, not an error."""

from __future__ import annotations

import logging

import pytest

import meter_protocol as mp
from gateway.fleet import Fleet

KEY = bytes(range(16))


def test_a_loaded_meter_answers_in_the_state_it_last_reported() -> None:
    fleet = Fleet(capacity=10)
    code = mp.meter_code_with_check_digit("1" * 19)
    fleet.add("+37360000001", code, KEY, key_id=3, credit_minor=4_200, relay_closed=False, import_wh=7)
    assert "37360000001" in fleet
    state = fleet.meter("37360000001")
    assert (state.meter_code, state.key_id, state.credit_minor) == (code, 3, 4_200)
    assert not state.relay_closed
    assert state.relay_reason is mp.RelayReason.CREDIT
    assert state.import_wh == 7


def test_a_key_of_the_wrong_size_is_refused_when_loaded() -> None:
    with pytest.raises(mp.ProtocolError):
        Fleet().add("37360000001", mp.meter_code_with_check_digit("1" * 19), b"short")


def test_a_meter_whose_code_fails_its_check_is_let_go_of_when_reached(caplog: pytest.LogCaptureFixture) -> None:
    fleet = Fleet(capacity=10)
    fleet.add("37360000002", "12345", KEY)
    assert len(fleet) == 1
    with caplog.at_level(logging.WARNING, logger="smsmeter.gateway.fleet"):
        assert fleet.answer("37360000002", b"\x00", False) == []
    assert "37360000002" not in fleet
    assert "cannot be simulated" in caplog.text
