"""The chain side of the devnet in one asyncio loop on a background thread.

Hosts the validator, one node per agent and each node's RPC and com servers,
and offers thread-safe calls (pause, resume, heights) to the synchronous code
that runs agents and tests.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, List, Optional, TypeVar

from aiohttp import web

from settleproof.devnet.chain import Chain
from settleproof.devnet.node import AgentNode
from settleproof.devnet.rpc import NodeHttp, validator_address
from settleproof.devnet.validator import Validator
from settleproof.loop_thread import LoopThread


HOST = "127.0.0.1"
# Tendermint RPC takes requests of up to 1 MiB (max_header_bytes); the URL included.
MAX_REQUEST_LINE = 1 << 20
T = TypeVar("T")


def _bound_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@dataclass
class NodePorts:
    """Where agent i's ABCI server listens and where its node's RPC and com servers listen."""

    abci: int
    rpc: int = 0
    com: int = 0


class DevChain:
    """Validator + nodes + HTTP servers; ``start()`` binds the RPC/com ports and starts producing blocks."""

    def __init__(self, abci_ports: List[int], block_interval: float = 0.5, host: str = HOST,
                 tx_wait: Optional[float] = None) -> None:
        """One node per ABCI port; ``tx_wait`` bounds how long ``/tx`` waits (default: two blocks)."""
        self.host = host
        self.block_interval = block_interval
        self.tx_wait = 2 * block_interval if tx_wait is None else tx_wait
        self.ports = [NodePorts(abci=port) for port in abci_ports]
        self.validator: Optional[Validator] = None
        self.nodes: List[AgentNode] = []
        self._thread = LoopThread("devnet-chain")
        self._runners: List[web.AppRunner] = []
        self._tasks: List[asyncio.Task] = []

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "DevChain":
        """Run the loop on a thread; return once every server listens and the first block is made."""
        self._thread.start(self._start)
        return self

    async def _start(self) -> None:
        self.validator = Validator(self.block_interval, bytes.fromhex(validator_address(-1)))
        for index, ports in enumerate(self.ports):
            node = AgentNode(index, self.host, ports.abci, self._origin)
            http = NodeHttp(node, self.validator, lambda: self.nodes, self.tx_wait)
            ports.rpc = await self._serve(http.rpc_app())
            ports.com = await self._serve(http.com_app())
            self.nodes.append(node)
        self._tasks = [asyncio.create_task(node.run()) for node in self.nodes]
        self._tasks.append(asyncio.create_task(self.validator.run()))

    def _origin(self) -> Chain:
        return self.validator.history[0]  # type: ignore[union-attr]

    async def _serve(self, app: web.Application) -> int:
        sock = _bound_socket(self.host)
        # The framework sends whole payloads in the query string of /broadcast_tx_sync (GET),
        # as Tendermint accepts; aiohttp's default 8 KiB request line would refuse them.
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=1.0,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_REQUEST_LINE,
        )
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runners.append(runner)
        return int(sock.getsockname()[1])

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for node in self.nodes:
            await node.client.close()

    def stop(self) -> None:
        """Stop producing, close every socket, join the thread (idempotent)."""
        self._thread.stop(self._stop, timeout=15)

    # ------------------------------------------------------------------ thread-safe access
    def call(self, work: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the chain's loop from another thread; its result."""
        return self._thread.call(work, timeout)

    def run_sync(self, work: Callable[[], T]) -> T:
        """Run a plain function on the chain's loop (so it sees a consistent state); its result."""

        async def wrapped() -> T:
            return work()

        return self.call(wrapped())

    def pause(self, index: int) -> None:
        """Partition agent ``index``'s node: no blocks in, no txs out."""
        self.run_sync(self.nodes[index].pause)

    def resume(self, index: int) -> None:
        """Heal the partition; the node catches up."""
        self.run_sync(self.nodes[index].resume)

    def head(self) -> int:
        """Height of the validator's current chain."""
        return self.run_sync(lambda: self.validator.chain.head)  # type: ignore[union-attr]

    def wait_for_head(self, height: int, timeout: float) -> None:
        """Block until the validator's current chain reaches ``height`` (TimeoutError otherwise)."""
        validator = self.validator
        assert validator is not None  # nosec
        self.call(asyncio.wait_for(validator.chain.wait_for(height), timeout), timeout + 1)

    def wait_committed(self, index: int, height: int, timeout: float) -> None:
        """Block until agent ``index`` committed ``height`` of the current chain (TimeoutError otherwise)."""
        validator = self.validator
        assert validator is not None  # nosec
        work = self.nodes[index].wait_committed(validator.chain, height)
        self.call(asyncio.wait_for(work, timeout), timeout + 1)

    def chain_id(self) -> str:
        """Id of the validator's current chain (``autonolas-<period>`` after hard resets)."""
        return self.run_sync(lambda: self.validator.chain.genesis.chain_id)  # type: ignore[union-attr]

    def committed(self, index: int) -> int:
        """Last height agent ``index`` committed on the chain its node follows."""
        return self.run_sync(lambda: self.nodes[index].committed)

    def rpc_url(self, index: int) -> str:
        """Agent ``index``'s Tendermint RPC base URL."""
        return f"http://{self.host}:{self.ports[index].rpc}"

    def com_url(self, index: int) -> str:
        """Agent ``index``'s com server base URL."""
        return f"http://{self.host}:{self.ports[index].com}"
