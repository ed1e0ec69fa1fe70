"""The fuzz run: a million random and mutated frames, none may raise anything but ProtocolError.

Marked slow (about a minute); run it with `pytest -m slow tests/unit/protocol/test_fuzz.py`, or as
`python bench/protocol.py --fuzz 1000000`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FRAMES = 1_000_000


def _bench() -> object:
    path = Path(__file__).parents[3] / "bench" / "protocol.py"
    spec = importlib.util.spec_from_file_location("bench_protocol", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_million_fuzzed_frames_raise_only_protocol_errors() -> None:
    counts = _bench().fuzz(FRAMES, seed=20_261_122)  # type: ignore[attr-defined]
    assert counts["foreign"] == 0
    assert sum(counts.values()) == FRAMES
    assert counts["decoded"] > 0  # the authentic-random-plaintext share reaches the payload parser


def test_a_small_fuzz_run_in_the_default_suite() -> None:
    counts = _bench().fuzz(5_000, seed=7)  # type: ignore[attr-defined]
    assert counts["foreign"] == 0
