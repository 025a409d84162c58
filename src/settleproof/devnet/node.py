"""One agent's Tendermint node: it follows a chain and feeds that chain's blocks to the agent over ABCI.

Every node reads the same blocks from the validator's store at its own pace,
so a slow, paused or restarted agent lags without holding the others back, and
catching up is the same loop as following live. What a real node does on
(re)start, this node does on every (re)connection (Tendermint's handshake):
``Info``; if the app reports height 0, ``InitChain`` from the chain's genesis;
then every stored block above the app's height, then new blocks as they come.
That covers a gentle reset (same chain, replay from the app's height), a hard
reset (a new chain; the agent has already emptied its local blockchain, so
height 0) and an agent restarted after a crash or kill -9 (height 0 on a
reconnection nobody asked for: InitChain on the first chain of the history and
a full replay, chain after chain; see ``validator`` for why).

Restarts requested through the com server happen between blocks, never inside
one, so the app never sees a BeginBlock before the previous block's Commit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from packages.valory.connections.abci.tendermint.abci.types_pb2 import (  # type: ignore[import-untyped]
    RequestCheckTx,
    RequestCommit,
    RequestDeliverTx,
    RequestEndBlock,
    RequestInfo,
    ResponseCheckTx,
    ResponseDeliverTx,
)

from settleproof.devnet.abci_client import AbciClient, AbciError
from settleproof.devnet.chain import BLOCK_PROTOCOL, Block, Chain, tx_hash
from settleproof.devnet.validator import LOG


P2P_PROTOCOL = 8
RECONNECT_DELAY = 0.2
STUCK_DELAY = 5.0


class AppAheadError(AbciError):
    """The app is past the chain's head: as Tendermint refuses to start, the node waits for a reset."""


class RestartFailed(RuntimeError):
    """A requested node restart did not complete."""


@dataclass(frozen=True)
class TxResult:
    """A delivered tx as this node's agent judged it (what ``/tx`` reports)."""

    height: int
    index: int
    tx: bytes
    result: ResponseDeliverTx


class AgentNode:  # pylint: disable=too-many-instance-attributes
    """Agent ``index``'s node; ``run()`` is its life, the other methods are what its RPC and com servers call."""

    def __init__(self, index: int, host: str, abci_port: int, origin: Callable[[], Chain],
                 request_timeout: float = 60.0) -> None:
        """Follow the chain ``origin()`` (the first chain of the history); serve the agent at ``host:abci_port``."""
        self.index = index
        self.origin = origin
        self.chain = origin()
        self.client = AbciClient(host, abci_port, request_timeout)
        self.connected = False
        self.synced = False  # handshake done on the current connection
        self.paused = False
        self.committed = self.chain.genesis.initial_height - 1  # last height the app committed on self.chain
        self.stored = self.committed  # newest block this node holds (what /status reports)
        self.results: Dict[str, TxResult] = {}
        self.app_hashes: Dict[int, bytes] = {}  # height -> app hash after that height
        self._wake = asyncio.Event()
        self._committed_event = asyncio.Event()
        self._restart_to: Optional[Chain] = None
        self._requested = 0  # restart generations asked for
        self._restart_waiters: List[Tuple[int, asyncio.Future]] = []

    # ------------------------------------------------------------------ life
    async def run(self) -> None:
        """Connect, handshake, follow; on a lost connection or a restart request, do it again."""
        while True:
            delay = RECONNECT_DELAY
            requested = self._restart_to is not None
            applied = self._apply_restart()
            try:
                await self._connect()
                await self._handshake(requested)
                self.synced = True
                self._finish_restarts(applied)
                await self._follow(applied)
            except AppAheadError as exc:
                LOG.error("agent %d: %s", self.index, exc)
                delay = STUCK_DELAY
            except AbciError as exc:
                if self.connected:
                    LOG.warning("agent %d: %s; reconnecting", self.index, exc)
            finally:
                self.connected = self.synced = False
                await self.client.close()
            if self._requested == applied:
                await asyncio.sleep(delay)

    def _apply_restart(self) -> int:
        """Move to the chain a restart asked for; the restart generation now applied."""
        chain, self._restart_to = self._restart_to, None
        if chain is not None and chain is not self.chain:
            self._switch(chain)
        return self._requested

    def _switch(self, chain: Chain) -> None:
        """Follow another chain: a wiped node, nothing stored yet."""
        self.chain, self.results, self.app_hashes = chain, {}, {}
        self.committed = self.stored = chain.genesis.initial_height - 1

    async def _connect(self) -> None:
        """Wait until the agent listens (it may be starting or restarting)."""
        while True:
            try:
                await self.client.connect()
                self.connected = True
                return
            except OSError:
                await asyncio.sleep(RECONNECT_DELAY)

    async def _handshake(self, requested: bool) -> None:
        """Tendermint's start-up handshake: Info, InitChain if the app is empty, then replay from the store.

        An app found empty on a reconnection nobody asked for was restarted: it
        is replayed the whole history, from the first chain on.
        """
        info = await self.client.request(
            info=RequestInfo(version="0.34.19", block_version=BLOCK_PROTOCOL, p2p_version=P2P_PROTOCOL)
        )
        app_height = info.info.last_block_height
        if app_height == 0 and not requested and self.chain is not self.origin():
            self._switch(self.origin())
        genesis = self.chain.genesis
        if app_height == 0:
            response = await self.client.request(init_chain=genesis.init_chain_request())
            self.app_hashes = {genesis.initial_height - 1: response.init_chain.app_hash}
            self.results = {}
            self.committed = genesis.initial_height - 1
        elif app_height <= self.chain.head:
            self.committed = app_height
        else:
            raise AppAheadError(
                f"app at height {app_height} is ahead of chain {genesis.chain_id} (head {self.chain.head}); "
                "waiting for the agent to reset"
            )
        self.stored = self.committed if self.paused else max(self.committed, self.chain.head)
        LOG.info("agent %d: handshake on %s at app height %d, replaying to %d",
                 self.index, genesis.chain_id, app_height, self.stored)

    async def _follow(self, applied: int) -> None:
        """Deliver blocks in order until a newer restart is requested."""
        while self._requested == applied:
            if not self.paused and self.committed < self.chain.head:
                await self._deliver(self.chain.block(self.committed + 1))
                continue
            self._wake.clear()
            waits = {asyncio.ensure_future(self._wake.wait())}
            if not self.paused:  # a paused node waits for resume (or a restart) only
                waits.add(asyncio.ensure_future(self.chain.wait_for(self.committed + 1)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
                await asyncio.gather(*waits, return_exceptions=True)

    async def _deliver(self, block: Block) -> None:
        """BeginBlock, DeliverTx for each tx (keeping the agent's verdict), EndBlock, Commit."""
        self.stored = max(self.stored, block.height)
        await self.client.request(begin_block=block.begin_block_request())
        for index, tx in enumerate(block.txs):
            response = await self.client.request(deliver_tx=RequestDeliverTx(tx=tx))
            self.results[tx_hash(tx)] = TxResult(block.height, index, tx, response.deliver_tx)
        await self.client.request(end_block=RequestEndBlock(height=block.height))
        response = await self.client.request(commit=RequestCommit())
        self.app_hashes[block.height] = response.commit.data
        self.committed = block.height
        self._committed_event.set()
        self._committed_event = asyncio.Event()

    # ------------------------------------------------------------------ control
    async def restart(self, chain: Optional[Chain] = None, timeout: float = 15.0) -> None:
        """Restart the node (on ``chain``, default its own) after the current block; return after the handshake."""
        self._requested += 1
        waiter = asyncio.get_running_loop().create_future()
        self._restart_waiters.append((self._requested, waiter))
        self._restart_to = chain or self.chain
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError as exc:
            raise RestartFailed(f"agent {self.index} did not complete the handshake within {timeout}s") from exc

    def _finish_restarts(self, applied: int) -> None:
        """Release the callers whose restart the last handshake carried out."""
        done = [(gen, waiter) for gen, waiter in self._restart_waiters if gen <= applied]
        self._restart_waiters = [item for item in self._restart_waiters if item not in done]
        for _, waiter in done:
            if not waiter.done():
                waiter.set_result(None)

    def pause(self) -> None:
        """Partition the node: no more blocks reach the agent, and its txs reach no one."""
        self.paused = True

    def resume(self) -> None:
        """Heal the partition: the node catches up from the store, then follows live."""
        self.paused = False
        self._wake.set()

    # ------------------------------------------------------------------ RPC support
    async def check_tx(self, tx: bytes) -> ResponseCheckTx:
        """CheckTx on this node's agent (raises ``AbciError`` when it is not reachable)."""
        response = await self.client.request(check_tx=RequestCheckTx(tx=tx))
        return response.check_tx

    async def wait_for_tx(self, digest: str, timeout: float) -> Optional[TxResult]:
        """The tx's result once this node's agent has committed it, waiting at most ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while digest not in self.results:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._committed_event.wait(), remaining)
            except asyncio.TimeoutError:
                return None
        return self.results[digest]

    async def wait_committed(self, chain: Chain, height: int) -> None:
        """Return once the agent committed ``height`` of ``chain``."""
        while self.chain is not chain or self.committed < height:
            await self._committed_event.wait()

    @property
    def status_height(self) -> int:
        """The newest block this node holds: all of its chain, unless partitioned or delivering live."""
        if self.paused:
            return self.stored
        if not self.synced:
            return max(self.stored, self.chain.head)
        return self.stored

    @property
    def live(self) -> bool:
        """Connected and not partitioned: counted as a peer by the others."""
        return self.connected and not self.paused
