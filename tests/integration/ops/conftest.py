"""Operations fixtures: the node-smpp SMSC for the scale-out run."""

from tests.peers.smsc import smsc, smsc_factory

__all__ = ["smsc", "smsc_factory"]
