"""Test-only tooling that needs a running agent: the byzantine agent and its modes.

The agent's packages and the operator's ``settleproof`` command never import
this package; tests and local experiments do. ``byzantine.command()`` is the
argv that starts an agent folder as a byzantine agent (``Devnet(commands=...)``),
``byzantine.set_mode(folder, mode)`` switches what it sends while it runs, and
``modes`` holds the pure rewrites, one per mode.
"""

from settleproof.testing.byzantine import command, read_mode, set_mode
from settleproof.testing.modes import MODES, Facts, mutate

__all__ = ["MODES", "Facts", "command", "mutate", "read_mode", "set_mode"]
