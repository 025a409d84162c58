"""One Tendermint validator of the devnet: the framework's control server and the ``tendermint node`` it runs.

The control server (``settleproof.devnet.control_server``) is our child; the
node is its child, in a session of its own (the framework starts it so). We
find the node's PID through psutil, since the control server restarts the
node on ``/gentle_reset``, ``/hard_reset`` and lost ABCI connections, and
every PID we signal is one we or our control server started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess  # nosec: we start our own control servers
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import psutil


HOST = "127.0.0.1"
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class NodePorts:
    """Where node ``i`` and its agent listen: P2P and RPC (the node), ABCI (the agent), control server."""

    p2p: int
    rpc: int
    abci: int
    com: int


class NodeProcess:
    """Node ``index``: ``start()``, ``kill()`` (the node only, kill -9), ``stop()``, ``restart()``, ``status()``."""

    def __init__(self, index: int, home: Path, ports: NodePorts, binary: Path, log_dir: Path,
                 create_empty_blocks: bool = True) -> None:
        """Nothing runs until ``start()``; logs go to ``log_dir/node<i>.log`` (the node) and ``node<i>.control.log``."""
        self.index = index
        self.home = home
        self.ports = ports
        self.binary = binary
        self.log_path = log_dir / f"node{index}.log"
        self.control_log_path = log_dir / f"node{index}.control.log"
        self.state_dir = home.parent / f"state{index}"
        self.create_empty_blocks = create_empty_blocks
        self.process: Optional[subprocess.Popen] = None
        self._known_node_pid: Optional[int] = None

    @property
    def rpc_url(self) -> str:
        """The node's Tendermint RPC, as the agent uses it."""
        return f"http://{HOST}:{self.ports.rpc}"

    @property
    def com_url(self) -> str:
        """The control server, as the agent uses it."""
        return f"http://{HOST}:{self.ports.com}"

    def env(self) -> Dict[str, str]:
        """What the framework's control server reads (the names of Valory's Tendermint image)."""
        return {
            **os.environ,
            "PATH": f"{self.binary.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "TMHOME": str(self.home),
            "TMSTATE": str(self.state_dir),
            "PROXY_APP": f"tcp://{HOST}:{self.ports.abci}",
            "RPC_LADDR": f"tcp://{HOST}:{self.ports.rpc}",
            "P2P_LADDR": f"tcp://{HOST}:{self.ports.p2p}",
            "CREATE_EMPTY_BLOCKS": str(self.create_empty_blocks).lower(),
            "USE_GRPC": "false",
            "LOG_FILE": str(self.control_log_path),
            "WRITE_TO_LOG": "false",
            "ID": str(self.index),
            "PYTHONUNBUFFERED": "1",
        }

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "NodeProcess":
        """Start the control server (it runs ``tendermint init`` on the existing home, then the node)."""
        if self.running:
            raise RuntimeError(f"node {self.index} is already running")
        with open(self.log_path, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(  # nosec
                [sys.executable, "-m", "settleproof.devnet.control_server", "--host", HOST,
                 "--port", str(self.ports.com)],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        """Whether the control server runs."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> Optional[int]:
        """The control server's PID while it runs."""
        return self.process.pid if self.running else None  # type: ignore[union-attr]

    def node_pid(self) -> Optional[int]:
        """The ``tendermint node`` process the control server runs now, if any."""
        if not self.running:
            return None
        try:
            children = psutil.Process(self.process.pid).children()  # type: ignore[union-attr]
        except psutil.NoSuchProcess:
            return None
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "node" in child.cmdline()[1:2]:
                    self._known_node_pid = child.pid
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        return None

    def wait_node_pid(self, timeout: float) -> int:
        """Wait until the control server has started ``tendermint node``; its PID."""
        deadline = time.monotonic() + timeout
        while True:
            pid = self.node_pid()
            if pid is not None:
                return pid
            if not self.running or time.monotonic() > deadline:
                state = "exited" if not self.running else f"did not start it within {timeout}s"
                raise RuntimeError(f"node {self.index}: the control server {state} (see {self.log_path})")
            time.sleep(0.1)

    def kill(self) -> Optional[int]:
        """kill -9 the node (not its control server), as a crash would; the PID killed."""
        pid = self.node_pid()
        if pid is not None:
            _kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        return pid

    def stop(self) -> None:
        """SIGTERM the control server (it stops its node first); SIGKILL both if that takes too long."""
        if self.process is None:
            return
        node = self.node_pid() or self._known_node_pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if node is not None and _alive(node):
            _kill(node, signal.SIGKILL)
            _wait_gone(node, 10)
        self.process = None

    def restart(self) -> "NodeProcess":
        """Stop, then start again on the same home: the node resumes from its stored blocks."""
        self.stop()
        return self.start()

    # ------------------------------------------------------------------ RPC
    def status(self, timeout: float = 5.0) -> Optional[Dict[str, Any]]:
        """The node's ``/status`` result, or None while it does not answer."""
        return self.rpc("status", timeout)

    def rpc(self, method: str, timeout: float = 5.0) -> Optional[Dict[str, Any]]:
        """A Tendermint RPC call's ``result``, or None while the node does not answer."""
        try:
            with urllib.request.urlopen(f"{self.rpc_url}/{method}", timeout=timeout) as response:  # nosec
                return json.loads(response.read())["result"]
        except (OSError, ValueError, KeyError):
            return None

    def height(self) -> int:
        """The node's latest block height (0 while it does not answer)."""
        status = self.status()
        return int(status["sync_info"]["latest_block_height"]) if status else 0

    def wait_height(self, height: int, timeout: float) -> int:
        """Poll ``/status`` until the node holds block ``height``; the height it reached."""
        deadline = time.monotonic() + timeout
        while True:
            reached = self.height()
            if reached >= height:
                return reached
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.index} at height {reached}, not {height}, after {timeout}s")
            time.sleep(0.2)

    def manifest(self) -> Dict[str, Any]:
        """This node's part of ``devnet.json``."""
        return {
            "pid": self.node_pid(),
            "control_pid": self.pid,
            "home": str(self.home),
            "rpc_port": self.ports.rpc,
            "p2p_port": self.ports.p2p,
            "com_port": self.ports.com,
            "log": str(self.log_path),
            "control_log": str(self.control_log_path),
        }


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> None:
    try:
        psutil.Process(pid).wait(timeout)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
        pass
