"""``Devnet``: N real ``aea run`` agents on one development chain, and the faults tests inject into them.

It starts the IPFS probe stub, the chain (validator, nodes, RPC/com servers)
and the agents, writes ``D/devnet.json``, and stops everything it started, by
PID, in reverse order. Agents are ``agent_runner.AgentProcess``es; a restarted
agent is a new ``AgentProcess`` (fresh captured lines, same log file), so ask
``agent(i)`` again after a restart.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from settleproof import agent_runner
from settleproof.devnet import agents as agent_files
from settleproof.devnet.agents import AgentSlot, FrameworkSettings
from settleproof.devnet.server import DevChain
from settleproof.ports import free_port
from settleproof.ipfs_stub import IpfsStub


LOG = logging.getLogger("settleproof.devnet")
#: The framework's log line when an agent leaves registration (startup or rejoin).
REGISTERED = re.compile(r"'registration(?:_startup)?_round' round is done with event: Event\.DONE")


class Devnet:  # pylint: disable=too-many-instance-attributes
    """The whole local service: ``prepare()``, ``start()``, ``wait_registered()``, faults, ``stop()``."""

    def __init__(  # pylint: disable=too-many-arguments
        self,
        agents: int,
        data_dir: Path,
        env: Optional[Mapping[str, str]] = None,
        block_interval: float = 0.5,
        settings: FrameworkSettings = FrameworkSettings(),
    ) -> None:
        """Nothing runs until ``start()``; ``env`` supplies the SETTLEPROOF_* settings (default: ours)."""
        if agents < 1:
            raise ValueError("a devnet needs at least one agent")
        self.data_dir = Path(data_dir).resolve()
        self.slots = [AgentSlot(index, self.data_dir) for index in range(agents)]
        self.user_env = dict(os.environ if env is None else env)
        self.block_interval = block_interval
        self.settings = settings
        self.addresses: List[str] = []
        self.chain: Optional[DevChain] = None
        self.ipfs: Optional[IpfsStub] = None
        self._agents: List[Optional[agent_runner.AgentProcess]] = [None] * agents
        self._envs: List[Dict[str, str]] = []
        self._started_at: Optional[str] = None
        self._log_handler: Optional[logging.Handler] = None

    # ------------------------------------------------------------------ life cycle
    def prepare(self, refresh: bool = True) -> List[str]:
        """Keys and agent folders (see ``agents`` for the layout); the agents' addresses."""
        for sub in ("agents", "keys", "logs"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.addresses = agent_files.prepare_all(self.slots, refresh)
        return self.addresses

    def start(self) -> "Devnet":
        """Start the IPFS stub, the chain and every agent (``prepare()`` first if not done)."""
        if not self.addresses:
            self.prepare()
        self._started_at = datetime.now(timezone.utc).isoformat()
        self._log_to_file()
        try:
            self.ipfs = IpfsStub().start()
            self.chain = DevChain([free_port() for _ in self.slots], self.block_interval).start()
            self._envs = [self._env(slot) for slot in self.slots]
            for slot in self.slots:
                self.start_agent(slot.index)
        except BaseException:
            self.stop()
            raise
        return self

    def _log_to_file(self) -> None:
        """Chain events (handshakes, resets, lost connections) go to ``D/logs/devnet.log``."""
        handler = logging.FileHandler(self.data_dir / "logs" / "devnet.log")
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        self._log_handler = handler

    def _env(self, slot: AgentSlot) -> Dict[str, str]:
        chain = self.chain
        assert chain is not None and self.ipfs is not None  # nosec
        env = agent_files.agent_env(
            slot, self.addresses, chain.ports[slot.index].abci, chain.rpc_url(slot.index),
            chain.com_url(slot.index), self.ipfs.multiaddr, self.settings, self.user_env,
        )
        Path(env["SETTLEPROOF_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        return env

    def stop(self) -> None:
        """Stop every agent (SIGINT, then SIGKILL; all at once), the chain and the stub; safe to call twice."""
        with ThreadPoolExecutor(max_workers=len(self.slots)) as pool:
            list(pool.map(self.stop_agent, range(len(self.slots))))
        if self.chain is not None:
            self.chain.stop()
            self.chain = None
        if self.ipfs is not None:
            self.ipfs.stop()
            self.ipfs = None
        if self._log_handler is not None:
            LOG.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def __enter__(self) -> "Devnet":
        """Start on entering ``with``."""
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        """Always stop."""
        self.stop()

    # ------------------------------------------------------------------ waiting
    def agent(self, index: int) -> agent_runner.AgentProcess:
        """The current process of agent ``index`` (a new object after each restart)."""
        process = self._agents[index]
        if process is None:
            raise agent_runner.AgentError(f"agent {index} is not running")
        return process

    def metrics_url(self, index: int) -> str:
        """Base URL of agent ``index``'s ``/metrics`` and ``/healthcheck``."""
        return f"http://127.0.0.1:{agent_runner.served_port(self._envs[index])}"

    def wait_registered(self, timeout: float, indices: Optional[List[int]] = None) -> int:
        """Block until the agents left registration; the chain's height then."""
        deadline = time.monotonic() + timeout
        for index in indices if indices is not None else range(len(self.slots)):
            remaining = max(0.0, deadline - time.monotonic())
            process = self.agent(index)
            try:
                process.wait_for(REGISTERED.search, remaining, f"agent {index} registered")
            except agent_runner.AgentError as exc:
                said = [line for line in process.lines if line.strip()]
                state = "exited" if process.process is not None and process.process.poll() is not None else "timed out"
                last = said[-1] if said else "(no output)"
                raise agent_runner.AgentError(
                    f"agent {index} {state} before registering: {last}\n(log: {process.log_path})"
                ) from exc
        assert self.chain is not None  # nosec
        return self.chain.head()

    # ------------------------------------------------------------------ faults
    def start_agent(self, index: int) -> agent_runner.AgentProcess:
        """Start agent ``index`` (again): its node replays the chain to it."""
        slot = self.slots[index]
        current = self._agents[index]
        if current is not None and current.process is not None and current.process.poll() is None:
            raise agent_runner.AgentError(f"agent {index} is already running")
        process = agent_runner.AgentProcess(slot.folder, self._envs[index], log_path=slot.log_path)
        self._agents[index] = process.start()
        self.write_manifest()
        return process

    def stop_agent(self, index: int) -> None:
        """Clean shutdown (SIGINT, then SIGKILL after a while)."""
        process = self._agents[index]
        if process is not None:
            process.stop()

    def kill_agent(self, index: int) -> None:
        """kill -9, as a crash would."""
        process = self._agents[index]
        if process is not None:
            process.kill()

    def restart_agent(self, index: int) -> agent_runner.AgentProcess:
        """Stop, then start agent ``index``."""
        self.stop_agent(index)
        return self.start_agent(index)

    def pause_agent(self, index: int) -> None:
        """Stop delivering blocks to agent ``index`` (and relaying its txs): a partitioned node."""
        self._chain().pause(index)

    def resume_agent(self, index: int) -> None:
        """Deliver again; the agent catches up on the blocks it missed."""
        self._chain().resume(index)

    def _chain(self) -> DevChain:
        if self.chain is None:
            raise RuntimeError("devnet is not running")
        return self.chain

    # ------------------------------------------------------------------ manifest
    def manifest(self) -> Dict[str, Any]:
        """What runs where: the content of ``D/devnet.json``."""
        chain = self._chain()
        agents = []
        for slot in self.slots:
            ports = chain.ports[slot.index]
            process = self._agents[slot.index]
            agents.append({
                "index": slot.index,
                "name": slot.name,
                "address": self.addresses[slot.index],
                "pid": process.pid if process is not None else None,
                "abci_port": ports.abci,
                "rpc_port": ports.rpc,
                "com_port": ports.com,
                "metrics_port": agent_runner.served_port(self._envs[slot.index]) if self._envs else None,
                "log": str(slot.log_path),
                "folder": str(slot.folder),
                "data_dir": self._envs[slot.index]["SETTLEPROOF_DATA_DIR"] if self._envs else None,
            })
        return {
            "devnet_pid": os.getpid(),
            "started_at": self._started_at,
            "block_interval": self.block_interval,
            "ipfs": self.ipfs.multiaddr if self.ipfs is not None else None,
            "devnet_log": str(self.data_dir / "logs" / "devnet.log"),
            "agents": agents,
        }

    def write_manifest(self) -> Path:
        """Write ``D/devnet.json`` atomically."""
        path = self.data_dir / "devnet.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest(), indent=2) + "\n")
        tmp.replace(path)
        return path
