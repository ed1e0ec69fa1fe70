"""Operations fixtures: the node-smpp SMSC for the scale-out run."""

import importlib.util

from tests.peers.smsc import smsc, smsc_factory

__all__ = ["smsc", "smsc_factory"]

# Until the service runs the gateway (smsmeter/wiring.py), the scale-out run has nothing to share out.
collect_ignore = [] if importlib.util.find_spec("smsmeter.wiring") is not None else ["test_scale_out.py"]
