"""The devnet's block store: chains (a genesis and its ordered blocks) and how a block goes on the wire.

A ``Chain`` is what one Tendermint network holds between two hard resets. The
validator appends blocks to the current chain only; every agent's node reads
blocks from the chain it follows, so all agents see the same blocks (same
header time, same txs, same order), however late they read them.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import List, Sequence, Tuple

from google.protobuf.timestamp_pb2 import Timestamp  # pylint: disable=no-name-in-module

from packages.valory.connections.abci.tendermint.abci.types_pb2 import (  # type: ignore[import-untyped]
    LastCommitInfo,
    RequestBeginBlock,
    RequestInitChain,
)
from packages.valory.connections.abci.tendermint.types.types_pb2 import (  # type: ignore[import-untyped]
    BlockID,
    Header,
)
from packages.valory.connections.abci.tendermint.version.types_pb2 import (  # type: ignore[import-untyped]
    Consensus,
)

#: chain id of the chain the devnet starts with; chains after hard resets are ``autonolas-<period>``.
GENESIS_CHAIN_ID = "settleproof-devnet"
BLOCK_PROTOCOL = 11  # Tendermint 0.34's block version, which the framework targets
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


def tx_hash(tx: bytes) -> str:
    """Tendermint's tx hash: upper-case hex SHA-256 of the raw tx."""
    return hashlib.sha256(tx).hexdigest().upper()


def parse_time(text: str) -> int:
    """RFC 3339 UTC (``2024-01-02T03:04:05.123456Z``, as the framework sends genesis times) to ns."""
    match = _RFC3339.match(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
    whole = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    fraction = int((match.group(2) or "0").ljust(9, "0"))
    return int(whole.timestamp()) * 1_000_000_000 + fraction


def format_time(time_ns: int) -> str:
    """ns to RFC 3339 UTC with nanoseconds, as Tendermint's JSON shows times."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def _timestamp(time_ns: int) -> Timestamp:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return Timestamp(seconds=seconds, nanos=nanos)


@dataclass(frozen=True)
class Genesis:
    """What identifies a chain: agents name it in ``/hard_reset`` by period and genesis time."""

    chain_id: str
    time_ns: int
    initial_height: int = 1

    @property
    def identity(self) -> Tuple[str, int]:
        """Two resets asking for the same identity mean the same chain."""
        return self.chain_id, self.time_ns

    @property
    def period(self) -> int:
        """The period whose end started this chain; -1 for the devnet's own first chain."""
        prefix = "autonolas-"
        if self.chain_id.startswith(prefix) and self.chain_id[len(prefix):].isdigit():
            return int(self.chain_id[len(prefix):])
        return -1

    def init_chain_request(self) -> RequestInitChain:
        """InitChain as Tendermint sends it from this genesis (no validators: the app keeps its own)."""
        return RequestInitChain(
            time=_timestamp(self.time_ns),
            chain_id=self.chain_id,
            initial_height=self.initial_height,
        )


@dataclass(frozen=True)
class Block:
    """One committed block: the same bytes go to every agent."""

    chain_id: str
    height: int
    time_ns: int
    txs: Tuple[bytes, ...]
    last_hash: bytes
    proposer: bytes

    @property
    def data_hash(self) -> bytes:
        """Hash over the ordered txs."""
        return hashlib.sha256(b"".join(hashlib.sha256(tx).digest() for tx in self.txs)).digest()

    @property
    def hash(self) -> bytes:
        """The block id: binds chain, height, time, parent and txs."""
        header = f"{self.chain_id}|{self.height}|{self.time_ns}|".encode()
        return hashlib.sha256(header + self.last_hash + self.data_hash).digest()

    def begin_block_request(self) -> RequestBeginBlock:
        """BeginBlock with a Tendermint-shaped header; no votes or evidence (one validator, no slashing)."""
        header = Header(
            version=Consensus(block=BLOCK_PROTOCOL, app=0),
            chain_id=self.chain_id,
            height=self.height,
            time=_timestamp(self.time_ns),
            last_block_id=BlockID(hash=self.last_hash),
            data_hash=self.data_hash,
            proposer_address=self.proposer,
        )
        return RequestBeginBlock(hash=self.hash, header=header, last_commit_info=LastCommitInfo(round=0))


class Chain:
    """A genesis and its blocks; ``wait_for`` lets a node sleep until the chain grows."""

    def __init__(self, genesis: Genesis) -> None:
        """An empty chain: its first block will have ``genesis.initial_height``."""
        self.genesis = genesis
        self.blocks: List[Block] = []
        self._grown = asyncio.Event()

    @property
    def head(self) -> int:
        """Height of the newest block (``initial_height - 1`` before the first)."""
        return self.genesis.initial_height - 1 + len(self.blocks)

    @property
    def head_time_ns(self) -> int:
        """Time of the newest block, or the genesis time."""
        return self.blocks[-1].time_ns if self.blocks else self.genesis.time_ns

    @property
    def head_hash(self) -> bytes:
        """Hash of the newest block (empty before the first)."""
        return self.blocks[-1].hash if self.blocks else b""

    def block(self, height: int) -> Block:
        """The block at ``height`` (IndexError if not in the store)."""
        index = height - self.genesis.initial_height
        if index < 0:
            raise IndexError(height)
        return self.blocks[index]

    def append(self, txs: Sequence[bytes], proposer: bytes) -> Block:
        """Commit a block of ``txs`` timed now (strictly after its parent) and wake waiting nodes."""
        time_ns = max(time.time_ns(), self.head_time_ns + 1)
        block = Block(self.genesis.chain_id, self.head + 1, time_ns, tuple(txs), self.head_hash, proposer)
        self.blocks.append(block)
        self._grown.set()
        self._grown = asyncio.Event()
        return block

    async def wait_for(self, height: int) -> None:
        """Return once the chain holds ``height`` (never, if the chain no longer grows)."""
        while self.head < height:
            await self._grown.wait()
