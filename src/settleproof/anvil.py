"""Run a throw-away anvil chain for tests and local runs.

Anvil is started with ``--port 0`` so the kernel picks a free port (no
check-then-bind race); the chosen port is read from anvil's own
"Listening on" line, and the node counts as up only once it answers
``eth_chainId`` with the expected id. Every instance is stopped by the PID of
the process this module started, also from an ``atexit`` hook in case a caller
forgot (or crashed before) ``stop()``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess  # nosec B404
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, List, Optional, Sequence

from settleproof.paths import anvil_binary

DEFAULT_CHAIN_ID = 31337
_LISTENING = re.compile(r"Listening on ([0-9.]+):(\d+)")
_LIVE: "set[Anvil]" = set()


class AnvilError(RuntimeError):
    """Anvil did not start, or a JSON-RPC call to it failed."""


class Anvil:
    """One anvil subprocess bound to a loopback address.

    ``block_time=None`` means automine (a block per transaction); a number
    mines a block every ``block_time`` seconds (fractions allowed).
    """

    def __init__(
        self,
        *,
        block_time: Optional[float] = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        accounts: int = 10,
        balance_eth: Optional[int] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        binary: Optional[os.PathLike | str] = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        log_path: Optional[os.PathLike | str] = None,
    ) -> None:
        """Store options; nothing runs until ``start()``."""
        if not host.startswith("127."):
            raise ValueError(f"anvil must bind a loopback address, got {host!r}")
        self.block_time = block_time
        self.chain_id = chain_id
        self.accounts = accounts
        self.balance_eth = balance_eth
        self.host = host
        self.requested_port = port
        self.binary = Path(binary) if binary else Path(anvil_binary())
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self._log_path = Path(log_path) if log_path else None
        self._tmpdir: Optional[tempfile.TemporaryDirectory] = None
        self._proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self._rpc_id = 0

    # ------------------------------------------------------------------ life cycle
    def command(self) -> List[str]:
        """The exact argv used to start anvil (useful in error messages)."""
        cmd = [
            str(self.binary),
            "--host", self.host,
            "--port", str(self.requested_port),
            "--chain-id", str(self.chain_id),
            "--accounts", str(self.accounts),
        ]  # fmt: skip
        if self.block_time is not None:
            cmd += ["--block-time", f"{self.block_time:g}"]
        if self.balance_eth is not None:
            cmd += ["--balance", str(self.balance_eth)]
        return cmd + self.extra_args

    def start(self) -> "Anvil":
        """Start the process and return once it answers ``eth_chainId``."""
        if self._proc is not None:
            raise AnvilError("already started")
        if not self.binary.exists():
            raise AnvilError(
                f"anvil binary not found at {self.binary} (set SETTLEPROOF_ANVIL)"
            )
        if self._log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="settleproof-anvil-")
            self._log_path = Path(self._tmpdir.name) / "anvil.log"
        log = open(self._log_path, "wb")  # pylint: disable=consider-using-with
        try:
            # own session: a Ctrl-C in the terminal reaches pytest, not anvil;
            # pytest's teardown then stops anvil by PID.
            self._proc = subprocess.Popen(  # nosec B603
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        _LIVE.add(self)
        try:
            self._wait_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        """Poll the log for the port, then ``eth_chainId``, until ``deadline``."""
        assert self._proc is not None  # nosec B101
        last_error: Any = None
        while True:
            if self._proc.poll() is not None:
                raise AnvilError(
                    f"anvil exited with {self._proc.returncode} during start-up:\n"
                    f"{self.log_tail()}"
                )
            if self.port is None:
                match = _LISTENING.search(self.log_text())
                if match:
                    self.port = int(match.group(2))
            if self.port is not None:
                try:
                    got = int(self.rpc("eth_chainId", timeout=1.0), 16)
                    if got != self.chain_id:
                        raise AnvilError(f"chain id {got}, expected {self.chain_id}")
                    return
                except (OSError, AnvilError, ValueError) as exc:
                    last_error = exc
            if time.monotonic() >= deadline:
                raise AnvilError(
                    f"anvil not ready within {self.startup_timeout}s "
                    f"(last error: {last_error!r}):\n{self.log_tail()}"
                )
            try:  # waits on the process, so an early exit is noticed at once
                self._proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate our process by PID; kill it if it is still alive after ``timeout``."""
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
            self._log_path = None

    def __enter__(self) -> "Anvil":
        """Start on entering the ``with`` block (unless already started)."""
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        """Always stop, also when the block raised."""
        self.stop()

    # ------------------------------------------------------------------ facts
    @property
    def pid(self) -> Optional[int]:
        """PID of the running anvil, ``None`` when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether our process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def url(self) -> str:
        """JSON-RPC HTTP URL."""
        if self.port is None:
            raise AnvilError("not started")
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        """Everything anvil printed so far."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the log, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    # ------------------------------------------------------------------ JSON-RPC
    def rpc(self, method: str, params: Optional[list] = None, timeout: float = 10.0) -> Any:
        """Plain JSON-RPC call (no web3 needed); raises ``AnvilError`` on an error reply."""
        self._rpc_id += 1
        payload = {"jsonrpc": "2.0", "id": self._rpc_id, "method": method, "params": params or []}
        req = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310
            reply = json.loads(resp.read())
        if "error" in reply:
            raise AnvilError(f"{method}: {reply['error']}")
        return reply.get("result")

    def addresses(self) -> List[str]:
        """The unlocked dev accounts (checksummed), as anvil reports them."""
        return list(self.rpc("eth_accounts"))

    def block_number(self) -> int:
        """Current head."""
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, n: int = 1) -> int:
        """Mine ``n`` blocks now (``anvil_mine``); returns the new head."""
        self.rpc("anvil_mine", [hex(n)])
        return self.block_number()

    def snapshot(self) -> str:
        """Snapshot chain state; pass the id to ``revert``."""
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> bool:
        """Return to a snapshot (each id can be used once, as in anvil)."""
        return bool(self.rpc("evm_revert", [snapshot_id]))


def start_anvil(**kwargs: Any) -> Anvil:
    """Start an :class:`Anvil` with the given options and return it running."""
    return Anvil(**kwargs).start()


@atexit.register
def _stop_leftovers() -> None:
    """Stop instances a caller never stopped, so no anvil outlives the interpreter."""
    for instance in list(_LIVE):
        instance.stop(timeout=2.0)
