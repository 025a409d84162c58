"""``settleproof devnet up``: the whole service on one machine, until Ctrl-C.

Prints exactly one line on stdout (once every agent registered); everything
else goes to ``D/logs/``. Errors end the command with a message and stop what
was started.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Dict, Optional

import click


if TYPE_CHECKING:  # pragma: no cover
    from settleproof.devnet.network import Devnet

REGISTRATION_TIMEOUT = 300.0
MANIFEST_REFRESH = 2.0  # seconds: the control servers restart their nodes (new PIDs) on resets


@click.group(name="devnet")
def devnet() -> None:
    """Run a local multi-agent network: N real agents on N real Tendermint validators."""


@devnet.command(name="up")
@click.option("--agents", "n_agents", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of agents.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".devnet"),
              show_default=True, help="Keys, agent folders, stores, logs and devnet.json.")
@click.option("--block-interval", type=click.FloatRange(min=0.1), default=0.5, show_default=True,
              help="Seconds between blocks (Tendermint's timeout_commit; empty blocks too).")
def up(n_agents: int, data_dir: Path, block_interval: float) -> None:
    """Start N validators and N agents with the SETTLEPROOF_* settings of this environment; stop on SIGINT/SIGTERM."""
    # Local imports keep `settleproof --help` fast (the framework import is slow).
    from settleproof.agent_runner import AgentError  # pylint: disable=import-outside-toplevel
    from settleproof.devnet.network import Devnet  # pylint: disable=import-outside-toplevel

    stop = threading.Event()

    def on_signal(_signum: int, _frame: Optional[FrameType]) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    net = Devnet(n_agents, data_dir, block_interval=block_interval)
    try:
        net.prepare()
        if stop.is_set():
            return
        net.start()
        height = _wait_registered(net, stop)
        if height is None:
            return
        click.echo(f"devnet: {n_agents} agents registered, chain at height {height}; "
                   f"see {net.data_dir / 'devnet.json'}; Ctrl-C to stop")
        while not stop.wait(MANIFEST_REFRESH):
            net.refresh_manifest()
    except AgentError as exc:
        if stop.is_set():  # interrupted while fetching or starting: the failure is ours
            return
        hint = "\n(the registry's fingerprints are stale: run `make lock`)" if "incorrect fingerprint" in str(exc) else ""
        raise click.ClickException(f"{exc}{hint}") from exc
    finally:
        net.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_registered(net: "Devnet", stop: threading.Event) -> Optional[int]:
    """Wait for registration on a thread, so a signal still stops us; the height, or None if stopped first."""
    result: Dict[str, Any] = {}
    finished = threading.Event()

    def wait() -> None:
        try:
            result["height"] = net.wait_registered(REGISTRATION_TIMEOUT)
        except Exception as exc:  # pylint: disable=broad-except  # re-raised on the main thread
            result["error"] = exc
        finished.set()

    threading.Thread(target=wait, name="devnet-registration", daemon=True).start()
    while not finished.wait(0.2):
        if stop.is_set():
            return None
    if "error" in result:
        raise result["error"]
    return result["height"]
