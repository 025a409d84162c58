"""Run real `aea run` agents from the local `packages/` registry, for tests and local runs.

Prepares one folder per agent (fetched agent, its own key), starts it with the
environment it needs, and lets callers await log lines instead of sleeping.
"""

import json
import os
import re
import signal
import subprocess  # nosec: we start our own agents
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, TypeVar

from settleproof.paths import repo_root
from settleproof.ports import free_port


AGENT_PUBLIC_ID = "settleproof/settleproof:0.1.0"
# Every connection but p2p_libp2p_client (no ACN here). Named explicitly because
# `aea run --exclude-connections` validates the yaml before substituting env vars.
CONNECTIONS = ",".join(
    [
        "settleproof/rpc_client:0.1.0",
        "settleproof/webhook_client:0.1.0",
        "valory/abci:0.1.0",
        "valory/http_client:0.23.0",
        "valory/http_server:0.22.0",
        "valory/ipfs:0.1.0",
        "valory/ledger:0.19.0",
    ]
)


T = TypeVar("T")


class AgentError(RuntimeError):
    """An agent could not be prepared, or did not reach the awaited state."""


def registry_path() -> Path:
    """The local registry agents are fetched from: `$SETTLEPROOF_REGISTRY`, else the repo's `packages/`."""
    return Path(os.environ.get("SETTLEPROOF_REGISTRY") or repo_root() / "packages")


def served_port(env: Mapping[str, str]) -> int:
    """The port an agent started with `env` serves /metrics and /healthcheck on."""
    return int(env[f"{HTTP_SERVER_CONFIG}PORT"])


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _run(args: List[str], cwd: Path) -> str:
    result = subprocess.run(  # nosec
        args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise AgentError(f"{' '.join(args)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare_agent(parent: Path, name: str, private_key: Optional[str] = None) -> Path:
    """Fetch the agent from the local registry into `parent/name` and give it a key.

    Idempotent: an existing folder with a key is reused, so restarts keep the identity.
    """
    parent.mkdir(parents=True, exist_ok=True)
    folder = parent / name
    key_file = folder / "ethereum_private_key.txt"
    if not (folder / "aea-config.yaml").exists():
        _run(
            [_bin("autonomy"), "--registry-path", str(registry_path()),
             "fetch", "--local", "--agent", AGENT_PUBLIC_ID, "--alias", name],
            cwd=parent,
        )
    if not key_file.exists():
        if private_key is None:
            _run([_bin("aea"), "generate-key", "ethereum"], cwd=folder)
        else:
            key_file.write_text(private_key)
        _run([_bin("aea"), "add-key", "ethereum"], cwd=folder)
        # The ACN connection is never connected here, but it is instantiated and wants its cert.
        _run([_bin("aea"), "add-key", "ethereum", "--connection"], cwd=folder)
        _run([_bin("aea"), "issue-certificates"], cwd=folder)
    return folder


def agent_address(folder: Path) -> str:
    """The agent's Ethereum address, from its key file."""
    from eth_account import Account  # pylint: disable=import-outside-toplevel

    key = (folder / "ethereum_private_key.txt").read_text().strip()
    return Account.from_key(key).address


class AgentProcess:
    """One running `aea run`, its log captured to a file and scanned for awaited lines."""

    def __init__(
        self, folder: Path, env: Mapping[str, str], log_path: Optional[Path] = None,
        command: Optional[Sequence[str]] = None,
    ):
        """Remember how to start the agent; `start()` starts it.

        `command` replaces `aea -s run --connections ...` (the argv, run in `folder`): tests start a
        byzantine agent this way, with the same folder, environment and log capture.
        """
        self.folder = folder
        self.env = dict(env)
        self.command = list(command) if command is not None else [_bin("aea"), "-s", "run", "--connections", CONNECTIONS]
        self.log_path = log_path or folder / "agent.log"
        self.process: Optional[subprocess.Popen] = None
        self._lines: List[str] = []
        self._changed = threading.Condition()
        self._reader: Optional[threading.Thread] = None

    @property
    def pid(self) -> Optional[int]:
        """The agent's PID while it runs."""
        return None if self.process is None else self.process.pid

    def start(self) -> "AgentProcess":
        """Start `aea run` without the ACN connection, in its own process group."""
        # The agent's settings come from `self.env` only, never from the caller's shell.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SETTLEPROOF_")}
        env = {**inherited, **self.env, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(  # nosec
            self.command,
            cwd=self.folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None  # nosec
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                with self._changed:
                    self._lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def lines(self) -> List[str]:
        """Every line the agent printed so far."""
        with self._changed:
            return list(self._lines)

    def wait_for(self, found: Callable[[str], Optional[T]], timeout: float, what: str) -> T:
        """Block until `found(line)` returns a value for some line; fail fast if the agent exits."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    value = found(line)
                    if value is not None:
                        return value
                seen = len(self._lines)
                exited = self.process is not None and self.process.poll() is not None
                remaining = deadline - time.monotonic()
                if exited or remaining <= 0:
                    tail = "\n".join(self._lines[-40:])
                    state = "exited" if exited else "timed out"
                    raise AgentError(f"agent {state} before {what}; last lines:\n{tail}")
                self._changed.wait(min(remaining, 1.0))

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        """Block until a line matches `pattern`."""
        regex = re.compile(pattern)
        return self.wait_for(regex.search, timeout, f"/{pattern}/")

    def wait(self, timeout: float) -> int:
        """Wait for the agent to exit by itself and for its last line to be read; its exit code."""
        assert self.process is not None and self._reader is not None  # nosec
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self, timeout: float = 15.0) -> None:
        """SIGINT (the agent's clean shutdown), then SIGKILL; by our own PID and group only."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def kill(self) -> None:
        """kill -9 the agent, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


SKILL_PARAMS = "SKILL_SETTLEPROOF_CHAINED_ABCI_MODELS_PARAMS_ARGS_"
ABCI_CONFIG = "CONNECTION_ABCI_CONFIG_"
HTTP_SERVER_CONFIG = "CONNECTION_HTTP_SERVER_CONFIG_"


def framework_env(  # pylint: disable=too-many-arguments
    participants: List[str],
    abci_port: int,
    tendermint_rpc_url: str,
    tendermint_com_url: str,
    ipfs_multiaddr: str,
    use_mock: bool = False,
    round_timeout_seconds: float = 30.0,
    reset_pause_duration: int = 10,
    metrics_port: Optional[int] = None,
) -> Dict[str, str]:
    """The framework settings of one agent, under the env names `autonomy deploy` also uses.

    The agent's yaml leaves these placeholders unnamed, so the framework derives
    each name from the setting's path; deployments generated by `autonomy deploy
    build` set the same names.
    """
    rpc_address = tendermint_rpc_url.replace("http://", "tcp://")
    return {
        # /metrics and /healthcheck (http_server): a free port unless given, so agents never collide.
        f"{HTTP_SERVER_CONFIG}HOST": "127.0.0.1",
        f"{HTTP_SERVER_CONFIG}PORT": str(metrics_port or free_port()),
        "ALL_PARTICIPANTS": json.dumps(participants),
        f"{ABCI_CONFIG}HOST": "127.0.0.1",
        f"{ABCI_CONFIG}PORT": str(abci_port),
        f"{ABCI_CONFIG}USE_MOCK": str(use_mock).lower(),
        f"{ABCI_CONFIG}TENDERMINT_CONFIG_RPC_LADDR": rpc_address,
        "CONNECTION_IPFS_CONFIG_IPFS_DOMAIN": ipfs_multiaddr,
        f"{SKILL_PARAMS}TENDERMINT_URL": tendermint_rpc_url,
        f"{SKILL_PARAMS}TENDERMINT_COM_URL": tendermint_com_url,
        f"{SKILL_PARAMS}ROUND_TIMEOUT_SECONDS": str(round_timeout_seconds),
        f"{SKILL_PARAMS}RESET_PAUSE_DURATION": str(reset_pause_duration),
        "SKILL_SETTLEPROOF_CHAINED_ABCI_MODELS_BENCHMARK_TOOL_ARGS_LOG_DIR": "benchmarks",
    }
