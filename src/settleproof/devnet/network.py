"""``Devnet``: N real ``aea run`` agents on N real Tendermint validators, and the faults tests inject into them.

It starts the IPFS probe stub, a fresh testnet (one genesis, one validator
home per agent under ``D/nodes/``), the P2P links between the nodes, one
framework control server and node per agent, and the agents; writes
``D/devnet.json``; and stops everything it started, by PID, agents first.
Agents are ``agent_runner.AgentProcess``es; a restarted agent is a new
``AgentProcess`` (fresh captured lines, same log file), so ask ``agent(i)``
again after a restart.
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
from typing import Any, Dict, List, Mapping, Optional, Sequence

from settleproof import agent_runner
from settleproof.devnet import agents as agent_files
from settleproof.devnet.agents import AgentSlot, FrameworkSettings
from settleproof.devnet import tendermint
from settleproof.devnet.links import PeerLinks
from settleproof.devnet.nodes import NodePorts, NodeProcess
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
        commands: Optional[Mapping[int, Sequence[str]]] = None,
        agent_env: Optional[Mapping[int, Mapping[str, str]]] = None,
    ) -> None:
        """Nothing runs until ``start()``; ``env`` supplies the SETTLEPROOF_* settings (default: ours).

        ``block_interval`` is Tendermint's ``timeout_commit``, the pause between
        blocks when every validator is up (see ``tendermint.Timeouts``).
        ``commands`` starts agent i with another argv than ``aea run`` (run in its
        folder, same environment): tests put a byzantine agent in a slot this way.
        ``agent_env`` changes some variables of agent i only, as its own operator would.
        """
        if agents < 1:
            raise ValueError("a devnet needs at least one agent")
        self.data_dir = Path(data_dir).resolve()
        self.slots = [AgentSlot(index, self.data_dir) for index in range(agents)]
        self.user_env = dict(os.environ if env is None else env)
        self.block_interval = block_interval
        self.settings = settings
        self.commands = {index: list(argv) for index, argv in (commands or {}).items()}
        self.agent_env = {index: dict(values) for index, values in (agent_env or {}).items()}
        self.addresses: List[str] = []
        self.nodes: List[NodeProcess] = []
        self.links: Optional[PeerLinks] = None
        self.ipfs: Optional[IpfsStub] = None
        self._agents: List[Optional[agent_runner.AgentProcess]] = [None] * agents
        self._envs: List[Dict[str, str]] = []
        self._started_at: Optional[str] = None
        self._log_handler: Optional[logging.Handler] = None

    # ------------------------------------------------------------------ life cycle
    def prepare(self, refresh: bool = True) -> List[str]:
        """Keys and agent folders (see ``agents`` for the layout); the agents' addresses."""
        for sub in ("agents", "keys", "logs", "nodes"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.addresses = agent_files.prepare_all(self.slots, refresh)
        return self.addresses

    def start(self) -> "Devnet":
        """Start the IPFS stub, the validators and every agent (``prepare()`` first if not done)."""
        if not self.addresses:
            self.prepare()
        self._started_at = datetime.now(timezone.utc).isoformat()
        self._log_to_file()
        try:
            self.ipfs = IpfsStub().start()
            self._start_nodes()
            self._envs = [self._env(slot) for slot in self.slots]
            for slot in self.slots:
                self.start_agent(slot.index)
            self.write_manifest()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nodes(self) -> None:
        """A fresh testnet on every start: the agents resume from their own stores, not from old blocks."""
        binary = tendermint.tendermint_binary()
        homes = tendermint.create_testnet(binary, len(self.slots), self.data_dir / "nodes")
        ports = [NodePorts(p2p=free_port(), rpc=free_port(), abci=free_port(), com=free_port()) for _ in homes]
        self.links = PeerLinks(len(homes)).start({index: port.p2p for index, port in enumerate(ports)})
        ids = [tendermint.node_id(home) for home in homes]
        timeouts = tendermint.Timeouts.for_block_interval(self.block_interval)
        for index, home in enumerate(homes):
            peers = [f"{ids[peer]}@127.0.0.1:{self.links.port(index, peer)}" for peer in range(len(homes))
                     if peer != index]
            tendermint.configure(home, peers, timeouts, moniker=f"node{index}")
        self.nodes = [NodeProcess(index, home, ports[index], binary, self.data_dir / "logs")
                      for index, home in enumerate(homes)]
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_node_pid(timeout=30)
        LOG.info("%d validators started (timeouts %s)", len(self.nodes), timeouts)

    def _log_to_file(self) -> None:
        """The launcher's own events (validators started, partitions) go to ``D/logs/devnet.log``."""
        handler = logging.FileHandler(self.data_dir / "logs" / "devnet.log")
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        self._log_handler = handler

    def _env(self, slot: AgentSlot) -> Dict[str, str]:
        assert self.ipfs is not None  # nosec
        node = self.nodes[slot.index]
        env = agent_files.agent_env(
            slot, self.addresses, node.ports.abci, node.rpc_url, node.com_url, self.ipfs.multiaddr,
            self.settings, {**self.user_env, **self.agent_env.get(slot.index, {})},
        )
        Path(env["SETTLEPROOF_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        return env

    def stop(self) -> None:
        """Stop every agent (SIGINT, then SIGKILL; all at once), the nodes, the links and the stub; safe to call twice."""
        with ThreadPoolExecutor(max_workers=len(self.slots)) as pool:
            list(pool.map(self.stop_agent, range(len(self.slots))))
            list(pool.map(lambda node: node.stop(), self.nodes))
        if self.links is not None:
            self.links.stop()
            self.links = None
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
        """Block until the agents left registration; the first live node's height then."""
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
        return self.height()

    def height(self) -> int:
        """The highest block any node holds now."""
        return max((node.height() for node in self.nodes), default=0)

    # ------------------------------------------------------------------ faults
    def start_agent(self, index: int, env: Optional[Mapping[str, str]] = None) -> agent_runner.AgentProcess:
        """Start agent ``index`` (again): its node replays its blocks to it in the ABCI handshake.
        ``env`` changes some of its variables from then on, as its operator editing them would."""
        if env:
            self._envs[index] = {**self._envs[index], **env}
        slot = self.slots[index]
        current = self._agents[index]
        if current is not None and current.process is not None and current.process.poll() is None:
            raise agent_runner.AgentError(f"agent {index} is already running")
        process = agent_runner.AgentProcess(
            slot.folder, self._envs[index], log_path=slot.log_path, command=self.commands.get(index)
        )
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

    def node(self, index: int) -> NodeProcess:
        """Agent ``index``'s Tendermint node."""
        return self.nodes[index]

    def kill_node(self, index: int) -> None:
        """kill -9 agent ``index``'s ``tendermint node`` (its control server and agent live on)."""
        self.nodes[index].kill()
        self.write_manifest()

    def stop_node(self, index: int) -> None:
        """Stop agent ``index``'s control server and node, as a stopped container would."""
        self.nodes[index].stop()
        self.write_manifest()

    def start_node(self, index: int) -> None:
        """Start agent ``index``'s control server and node again on the same home: it resumes from its blocks."""
        self.nodes[index].start()
        self.write_manifest()

    def restart_node(self, index: int) -> None:
        """Stop, then start agent ``index``'s node (a container restart)."""
        self.stop_node(index)
        self.start_node(index)

    def cut_node(self, index: int) -> None:
        """Cut agent ``index``'s node off from its peers (its agent and RPC still work): a partition."""
        self._links().cut(index)

    def heal_node(self, index: int) -> None:
        """Reconnect agent ``index``'s node; it catches up on the blocks it missed."""
        self._links().heal(index)

    def _links(self) -> PeerLinks:
        if self.links is None:
            raise RuntimeError("devnet is not running")
        return self.links

    # ------------------------------------------------------------------ manifest
    def manifest(self) -> Dict[str, Any]:
        """What runs where: the content of ``D/devnet.json``."""
        agents = []
        for slot in self.slots:
            process = self._agents[slot.index]
            node = self.nodes[slot.index] if self.nodes else None
            agents.append({
                "index": slot.index,
                "name": slot.name,
                "address": self.addresses[slot.index],
                "pid": process.pid if process is not None else None,
                "abci_port": node.ports.abci if node is not None else None,
                "rpc_port": node.ports.rpc if node is not None else None,
                "com_port": node.ports.com if node is not None else None,
                "metrics_port": agent_runner.served_port(self._envs[slot.index]) if self._envs else None,
                "log": str(slot.log_path),
                "folder": str(slot.folder),
                "data_dir": self._envs[slot.index]["SETTLEPROOF_DATA_DIR"] if self._envs else None,
                "node": node.manifest() if node is not None else None,
            })
        return {
            "devnet_pid": os.getpid(),
            "started_at": self._started_at,
            "block_interval": self.block_interval,
            "chain_id": tendermint.CHAIN_ID,
            "tendermint": tendermint.TENDERMINT_VERSION,
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

    def refresh_manifest(self) -> bool:
        """Rewrite ``D/devnet.json`` if a PID changed (the control servers restart their nodes); whether it did."""
        path = self.data_dir / "devnet.json"
        current = self.manifest()
        try:
            if json.loads(path.read_text()) == current:
                return False
        except (OSError, ValueError):
            pass
        self.write_manifest()
        return True
