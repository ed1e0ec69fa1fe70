"""The anti-replay window (docs/protocol.md §7.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_protocol import MalformedField, OutsideWindow, Replayed, ReplayWindow


def test_each_counter_is_accepted_once_in_any_order() -> None:
    window = ReplayWindow()
    for counter in (5, 3, 4, 1, 2, 9):
        window = window.check_and_mark(counter)
    for counter in (1, 2, 3, 4, 5, 9):
        with pytest.raises(Replayed):
            window.check_and_mark(counter)
    assert window.seen(9)
    assert not window.seen(8)
    assert not window.seen(10)
    window = window.check_and_mark(8)
    assert window.highest == 9


def test_counters_below_the_window_are_refused() -> None:
    window = ReplayWindow(size=32).check_and_mark(100)
    window.check_and_mark(69)  # the lowest still inside
    with pytest.raises(OutsideWindow) as info:
        window.check_and_mark(68)
    assert info.value.lowest == 69
    with pytest.raises(OutsideWindow):
        window.check_and_mark(0)


def test_the_old_window_is_unchanged() -> None:
    window = ReplayWindow()
    window.check_and_mark(1)
    assert window == ReplayWindow()


def test_a_big_jump_clears_the_bitmap() -> None:
    window = ReplayWindow(size=8).check_and_mark(1).check_and_mark(2).check_and_mark(1000)
    assert window.bitmap == 1
    window.check_and_mark(999)


def test_the_default_bitmap_fits_a_signed_64_bit_column() -> None:
    window = ReplayWindow()
    for counter in range(1, 200):
        window = window.check_and_mark(counter)
        assert window.bitmap < 2**63


def test_storage_form_round_trips_and_is_checked() -> None:
    window = ReplayWindow(size=64).check_and_mark(70).check_and_mark(10)
    assert ReplayWindow.from_bytes(window.to_bytes()) == window
    with pytest.raises(MalformedField):
        ReplayWindow.from_bytes(window.to_bytes()[:-1])
    with pytest.raises(MalformedField):
        ReplayWindow(highest=0, bitmap=1)


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=80))
def test_the_window_accepts_exactly_the_new_counters_inside_it(counters: list[int]) -> None:
    window = ReplayWindow(size=16)
    accepted: set[int] = set()
    for counter in counters:
        try:
            window = window.check_and_mark(counter)
        except Replayed:
            assert counter in accepted
        except OutsideWindow:
            assert counter <= window.highest - 16
        else:
            assert counter not in accepted
            accepted.add(counter)
    assert window.highest == (max(accepted) if accepted else 0)
