"""smsmeter: the composition root and the command-line interface.

This is the only package that reads configuration and the environment, imports every other package,
and owns the long-lived resources. Nothing imports it.
"""

__version__ = "0.1.0"
