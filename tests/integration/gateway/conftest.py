"""Gateway integration fixtures: the node-smpp SMSC (tests/peers/smsc.py) and a per-test time bound."""

from collections.abc import Iterator

import pytest

from tests.peers.bounds import bounded_test
from tests.peers.smsc import smsc, smsc_factory

__all__ = ["bounded", "smsc", "smsc_factory"]


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    yield from bounded_test(60.0)
