"""``python -m settleproof.devnet.control_server --port P``: the framework's Tendermint control server, without Flask.

This is the code Valory's Tendermint image runs
(``autonomy/deploy/generators/localhost/tendermint/app.py``): it runs
``tendermint init`` and ``tendermint node`` (restarting it when the ABCI
connection drops) and serves ``/params``, ``/gentle_reset``, ``/hard_reset``
and ``/app_hash`` to the agent. ``deploy run --localhost`` would start it
through Flask, which open-autonomy no longer ships; ``create_app()`` returns
the framework's own server class, which we run here.

It reads the same environment as the image: ``TMHOME``, ``TMSTATE``,
``PROXY_APP``, ``RPC_LADDR``, ``P2P_LADDR``, ``CREATE_EMPTY_BLOCKS``,
``USE_GRPC``, ``LOG_FILE``; ``tendermint`` must be on ``PATH``. On SIGTERM or
SIGINT it stops its node before exiting, so no node outlives it.

One change to the framework's behaviour, for a race we hit on 2 cores: the
node manager's monitor thread restarts ``tendermint node`` whenever the node
prints "RPC HTTP server stopped", which it also prints while ``/hard_reset``
stops it on purpose. When the monitor reads that line after the stop, it
starts a second node on the old block store while the reset runs
``unsafe-reset-all``; that node replays old blocks into the agent, which has
already reset its own chain, and the new node then panics ("state.AppHash
does not match AppHash after replay"). ``stop_monitor_first`` makes ``stop()``
tell the monitor to stop before the node is signalled, so the monitor never
restarts a node that is being stopped; its restart on a lost ABCI connection is
unchanged.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any, Optional


def main(argv: Optional[list] = None) -> int:
    """Start the node, serve the control API on ``--host:--port`` until SIGTERM/SIGINT; 0 after a clean stop."""
    parser = argparse.ArgumentParser(description="The framework's Tendermint control server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    # Imported here: the module configures logging (LOG_FILE) when imported.
    from autonomy.deploy.generators.localhost.tendermint.app import (  # pylint: disable=import-outside-toplevel
        create_app,
    )

    def on_signal(_signum: int, _frame: Optional[FrameType]) -> None:
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    node = None
    try:
        app, node = create_app()
        stop_monitor_first(node)
        app.run(host=args.host, port=args.port)
    finally:
        if node is not None:
            node.stop()
    return 0


def stop_monitor_first(node: Any) -> None:
    """Make ``node.stop()`` (used by ``/gentle_reset`` and ``/hard_reset``) stop the monitor before the node."""
    framework_stop = node.stop

    def stop() -> None:
        monitor = node._monitoring  # pylint: disable=protected-access
        if monitor is not None:
            monitor.stop()
        framework_stop()

    node.stop = stop


if __name__ == "__main__":
    sys.exit(main())
