"""Drive the agent's sans-I/O `QuorumReader` with plain aiohttp, as the behaviour does with the framework.

The reader yields batches and takes replies back; here each batch is sent
with `asyncio.gather`, one deadline per batch, and the policy's backoff is
waited with `asyncio.sleep`. `scan` repeats what successive periods do: read
the head, read `[checkpoint + 1, safe head]` (at most `max_blocks` blocks),
move the checkpoint to where the reader says the range is settled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, TypeVar

import aiohttp
from prometheus_client import CollectorRegistry

from packages.settleproof.skills.settlement_abci.agreement import Payment
from packages.settleproof.skills.settlement_abci.breaker import Breakers
from packages.settleproof.skills.settlement_abci.rpc_exchange import (
    ExchangeConfig,
    RpcCall,
    RpcReply,
    Steps,
    providers_of,
)
from packages.settleproof.skills.settlement_abci.rpc_metrics import RpcMetrics
from packages.settleproof.skills.settlement_abci.rpc_reader import QuorumReader

T = TypeVar("T")


class Clock:
    """Monotonic time that a test can move forward (to end a breaker's cool-down without waiting)."""

    def __init__(self) -> None:
        """Start at the real monotonic time."""
        self.offset = 0.0

    def __call__(self) -> float:
        """Now."""
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Jump ahead."""
        self.offset += seconds


async def post(session: aiohttp.ClientSession, call: RpcCall, timeout: float) -> RpcReply:
    """One JSON-RPC POST; transport failures become `status == 0` like the http_client's."""
    started = time.monotonic()

    def elapsed() -> float:
        return (time.monotonic() - started) * 1000

    try:
        async with session.post(
            call.url,
            data=call.body,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.read()
            return RpcReply(response.status, body, "", elapsed())
    except asyncio.TimeoutError:
        return RpcReply(0, error="timed out", elapsed_ms=elapsed())
    except aiohttp.ClientError as error:
        return RpcReply(0, error=repr(error)[:200], elapsed_ms=elapsed())


async def drive(steps: Steps[T], session: aiohttp.ClientSession) -> T:
    """Run a reader's batches to its result."""
    replies: Optional[List[RpcReply]] = None
    while True:
        try:
            batch = steps.send(replies)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value
        if batch.delay > 0:
            await asyncio.sleep(batch.delay)  # the retry policy's backoff, not synchronization
        replies = list(await asyncio.gather(*(post(session, c, batch.timeout) for c in batch.calls)))


@dataclass
class Scanner:  # pylint: disable=too-many-instance-attributes
    """The agent's reads over successive periods, with its breakers and metrics kept between them."""

    urls: Sequence[str]
    tokens: Sequence[str]
    receivers: Optional[Sequence[str]]
    quorum: int = 2
    confirmations: int = 2
    max_blocks: int = 2000
    max_log_range: int = 1000
    max_lag_blocks: int = 10
    config: ExchangeConfig = field(default_factory=lambda: ExchangeConfig(2.0))
    breakers: Breakers = field(default_factory=lambda: Breakers(3, 30.0))
    metrics: RpcMetrics = field(default_factory=lambda: RpcMetrics(CollectorRegistry()))
    clock: Clock = field(default_factory=Clock)
    budget: float = 20.0
    logs: List[str] = field(default_factory=list)

    def log(self, level: str, message: str, **fields: Any) -> None:
        """Keep log lines for assertions."""
        self.logs.append(f"{level} {message} | " + " ".join(f"{k}={v}" for k, v in fields.items()))

    def reader(self) -> QuorumReader:
        """One period's reader."""
        return QuorumReader(
            self.config,
            providers_of(self.urls),
            self.quorum,
            (self.max_log_range, self.max_lag_blocks),
            (self.breakers, self.metrics),
            self.log,
            self.clock,
            self.clock() + self.budget,
        )

    async def period(self, session: aiohttp.ClientSession, checkpoint: int) -> Tuple[List[Payment], int]:
        """One period from `checkpoint`: (payments, new checkpoint)."""
        reader = self.reader()
        head = await drive(reader.read_head(), session)
        if head is None:
            return [], checkpoint
        last = min(head - self.confirmations, checkpoint + self.max_blocks)
        if last <= checkpoint:
            return [], checkpoint
        steps = reader.read_payments(checkpoint + 1, last, self.tokens, self.receivers)
        payments, settled = await drive(steps, session)
        return payments, max(settled, checkpoint)

    async def scan(self, checkpoint: int, until: int, max_periods: int = 20) -> Tuple[List[Payment], int]:
        """Periods until the checkpoint reaches `until` or stops moving: (payments, checkpoint)."""
        found: List[Payment] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for _ in range(max_periods):
                payments, moved = await self.period(session, checkpoint)
                found.extend(payments)
                if moved == checkpoint or moved >= until:
                    return found, moved
                checkpoint = moved
        return found, checkpoint


def run(coroutine: Any) -> Any:
    """Run a coroutine to completion from a synchronous test."""
    return asyncio.run(coroutine)

