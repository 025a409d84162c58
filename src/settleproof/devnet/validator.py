"""The devnet's single validator: one mempool, one block producer, and the choice of chain at hard resets.

Hard resets. Each agent calls ``/hard_reset`` on its own com port at the end of
every ``reset_tendermint_after``-th period, with the new chain's identity
(``period_count`` → chain id ``autonolas-<period>``, ``genesis_time`` = the
consensus time of the period's last round transition, the same on every agent).
With real Tendermint every node wipes itself and restarts on that genesis, and
the new network makes blocks once enough nodes joined. Here one validator makes
all blocks, so ``chain_for_reset`` decides:

* the identity of the current chain → join it (a later agent of the same reset);
* an identity the validator already left (an archived chain) → join that chain:
  the node replays it, the agent reaches that chain's own reset and moves on,
  so an agent that was down across resets catches up chain by chain;
* a new identity for a later period → the validator moves: the current chain
  stops growing (its blocks stay readable) and a fresh chain starts, empty,
  at height 1; its txs come from a fresh mempool;
* anything else (an older period nobody is on) → a chain of its own that never
  grows, as a Tendermint node alone on a genesis nobody else uses.

An agent that restarts empty (crash, kill -9, stop and start) is replayed the
whole history, from the first chain on (see ``node``): it re-lives
registration and every period as the others did, and at each chain's end its
own reset request names the next chain, which is in the archive. Real
Tendermint prunes blocks at a reset, so there a restarted agent could only
replay the chain since the last reset, which starts mid-protocol; the devnet
keeps every chain in memory so that the restarted agent can rejoin.

No agent can fork the others off: the first agent of a reset only moves the
validator to the chain every other agent asks for moments later. Agents still
on the old chain get no more blocks, which costs them nothing: they are in the
same reset round, about to call ``/hard_reset`` themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Dict, List, Set, Tuple

from settleproof.devnet.chain import GENESIS_CHAIN_ID, Chain, Genesis, tx_hash


LOG = logging.getLogger("settleproof.devnet")


class MempoolError(ValueError):
    """A tx was refused before reaching the mempool (Tendermint's RPC error text)."""


class Validator:
    """Owns the current chain and its mempool, and appends a block every ``interval`` seconds."""

    def __init__(self, interval: float, address: bytes) -> None:
        """Start on the devnet's own genesis chain, timed now."""
        self.interval = interval
        self.address = address
        self.chain = Chain(Genesis(GENESIS_CHAIN_ID, time.time_ns()))
        self.history: List[Chain] = [self.chain]  # every chain the validator built, oldest first
        self._archive: Dict[Tuple[str, int], Chain] = {}
        self._mempool: List[bytes] = []
        self._pending: Set[str] = set()

    # ------------------------------------------------------------------ mempool
    def submit(self, tx: bytes) -> str:
        """Queue a tx (already CheckTx-ed by the submitting agent) for the next block; its hash."""
        digest = tx_hash(tx)
        if digest in self._pending:
            raise MempoolError("tx already exists in cache")
        self._pending.add(digest)
        self._mempool.append(tx)
        return digest

    # ------------------------------------------------------------------ blocks
    def produce(self) -> None:
        """Commit one block (empty blocks too: round timeouts run on block time)."""
        txs, self._mempool, self._pending = self._mempool, [], set()
        self.chain.append(txs, self.address)

    async def run(self) -> None:
        """Produce blocks on a fixed schedule until cancelled."""
        next_at = time.monotonic()
        while True:
            self.produce()
            next_at = max(next_at + self.interval, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    # ------------------------------------------------------------------ resets
    def chain_for_reset(self, genesis: Genesis) -> Chain:
        """The chain a node follows after a ``/hard_reset`` to ``genesis`` (see the module docstring)."""
        if genesis.identity == self.chain.genesis.identity:
            return self.chain
        if genesis.identity in self._archive:
            return self._archive[genesis.identity]
        if genesis.period > self.chain.genesis.period:
            LOG.info("validator moves to chain %s (was %s at height %d)",
                     genesis.chain_id, self.chain.genesis.chain_id, self.chain.head)
            self._archive[self.chain.genesis.identity] = self.chain
            self.chain = Chain(genesis)
            self.history.append(self.chain)
            self._mempool, self._pending = [], set()
            return self.chain
        LOG.warning("a node reset to %s, which no one else is on; it gets no blocks", genesis.chain_id)
        return Chain(genesis)  # never current, so it never grows
