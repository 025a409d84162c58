"""What a quorum of providers says about the head, the `Transfer` logs of a range and their blocks.

Sans I/O: each `read_*` is a generator of `Batch`es (see `rpc_exchange`). The
rules, all in favour of safety:

- the head is the highest block `quorum` providers reached; a provider far
  behind it cannot serve the range and is left out for the period, one far
  ahead is counted but still asked (its logs face the quorum like any other);
- logs are read in chunks of at most `max_log_range` blocks, the same chunks
  for every provider, refined for all when one refuses a chunk as too large;
- a log counts only when `quorum` providers returned it identically; a chunk
  without `quorum` answers ends the range before it, as does a log that the
  silent providers could still confirm;
- each payment's block (hash, timestamp) needs a quorum too, and the hash
  must be the one the log named.
Answers the quorum contradicts, and heads too far off, count as failures of
the provider that gave them.
"""

from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from packages.settleproof.skills.settlement_abci.agreement import Payment
from packages.settleproof.skills.settlement_abci.breaker import Breakers
from packages.settleproof.skills.settlement_abci.chunking import (
    Chunk,
    ChunkPlan,
    is_limit_error,
    refine,
    split_range,
)
from packages.settleproof.skills.settlement_abci.quorum import (
    LogQuorum,
    contradictions,
    quorum_blocks,
    quorum_head,
    quorum_logs,
)
from packages.settleproof.skills.settlement_abci.rpc_exchange import (
    OK,
    Exchange,
    ExchangeConfig,
    Handled,
    Log,
    Provider,
    Refused,
    Steps,
    Task,
)
from packages.settleproof.skills.settlement_abci.rpc_metrics import RpcMetrics
from packages.settleproof.skills.settlement_abci.transfers import (
    RpcError,
    Transfer,
    parse_block,
    parse_block_number,
    parse_logs,
    transfer_filter,
)


Block = Tuple[str, int]  # (hash, timestamp)
#: Given the agreed logs and the last block they cover, the ones wanted and the (never later) last block.
Narrow = Callable[[List[Transfer], int], Tuple[List[Transfer], int]]


class QuorumReader:  # pylint: disable=too-many-arguments,too-many-instance-attributes
    """One period's reads; breakers and metrics outlive it, the set of usable providers does not."""

    def __init__(
        self,
        config: ExchangeConfig,
        providers: Sequence[Provider],
        quorum: int,
        limits: Tuple[int, int],
        health: Tuple[Breakers, RpcMetrics],
        log: Log,
        clock: Callable[[], float],
        deadline: float,
    ) -> None:
        """`limits` = (max_log_range, max_lag_blocks); `health` = the agent's breakers and metrics."""
        self.names = tuple(p.name for p in providers)
        self.quorum = quorum
        self.max_log_range, self.max_lag_blocks = limits
        self.metrics = health[1]
        self.log = log
        self.net = Exchange(config, providers, health[0], health[1], log, clock, deadline)
        self.usable: Set[str] = set(self.names)

    def read_head(self) -> Steps[Optional[int]]:
        """The quorum head, or None; decides which providers are usable for this period."""
        heads: Dict[str, Optional[int]] = {name: None for name in self.names}

        def handle(task: Task, body: bytes) -> Handled:
            heads[task.provider] = parse_block_number(body, task.request_id)
            return OK

        tasks = [self.net.task(name, None, "eth_blockNumber", []) for name in self.names]
        yield from self.net.run(tasks, handle)
        head = quorum_head(heads, self.quorum)
        self.metrics.quorum_check("head", head is not None)
        self.usable = set()
        for name, value in heads.items():
            if value is None:
                continue
            if head is not None and abs(value - head) > self.max_lag_blocks:
                self.metrics.outliers.labels(name).inc()
                self.net.judge(name, f"head {value} is {value - head:+d} blocks from the quorum head {head}")
                if value < head:
                    continue
            else:
                self.net.judge(name)
            self.usable.add(name)
        if head is None:
            self.log("warning", "no provider quorum on the head", heads=heads)
        return head

    def read_payments(  # pylint: disable=too-many-arguments
        self,
        first: int,
        last: int,
        tokens: Sequence[str],
        receivers: Optional[Sequence[str]],
        narrow: Optional[Narrow] = None,
    ) -> Steps[Tuple[List[Payment], int]]:
        """Payments of `[first, last]` with their agreed block timestamps, and how far that is settled.

        `narrow`, when given, sees the agreed logs before any block is read: it drops
        the ones the caller has no use for and may end the range earlier (the
        observer leaves out dust and bounds the count), so neither costs a request.
        """
        transfers, last = yield from self.read_logs(first, last, tokens, receivers)
        if narrow is not None:
            narrowed, shorter = narrow(transfers, last)
            last = min(last, shorter)
            transfers = [t for t in narrowed if t.block_number <= last]
        numbers = sorted({t.block_number for t in transfers})
        blocks = (yield from self.read_blocks(numbers)) if numbers else {}
        payments = []
        for transfer in sorted(transfers):
            block = blocks.get(transfer.block_number)
            if block is None or block[0] != transfer.block_hash:
                self.log("warning", "no agreed block for a log", block=transfer.block_number)
                return payments, transfer.block_number - 1
            payments.append(Payment(transfer, block[1]))
        return payments, last

    def read_logs(
        self, first: int, last: int, tokens: Sequence[str], receivers: Optional[Sequence[str]]
    ) -> Steps[Tuple[List[Transfer], int]]:
        """Logs a quorum returned in `[first, last]`, and the last block the verdict covers.

        `receivers` filters on the server; None asks for every `Transfer` of the tokens.
        """
        plan = ChunkPlan(split_range(first, last, self.max_log_range))
        answers: Dict[Chunk, Dict[str, List[Transfer]]] = {c: {} for c in plan.chunks}

        def ask(provider: str, chunk: Chunk) -> Task:
            log_filter = transfer_filter(chunk.first, chunk.last, tokens, receivers)
            return self.net.task(provider, chunk, "eth_getLogs", [log_filter])

        def handle(task: Task, body: bytes) -> Handled:
            chunk: Chunk = task.key
            try:
                logs = parse_logs(body, chunk.first, chunk.last, tokens, receivers, task.request_id)
            except RpcError as error:
                if not is_limit_error(error.message, error.data):
                    raise
                self._refine(plan, answers, chunk, task.provider, error)
                pieces = plan.within(chunk)
                return "range_limited", [
                    ask(task.provider, p) for p in pieces if task.provider not in answers[p]
                ]
            for piece in plan.within(chunk):
                answers[piece].setdefault(task.provider, [t for t in logs if piece.holds(t.block_number)])
            return OK

        yield from self.net.run([ask(p, c) for c in plan.chunks for p in sorted(self.usable)], handle)
        return self._verdict(plan, answers, last)

    def _refine(
        self,
        plan: ChunkPlan,
        answers: Dict[Chunk, Dict[str, List[Transfer]]],
        chunk: Chunk,
        provider: str,
        error: RpcError,
    ) -> None:
        """Split a refused chunk for every provider; answers already in are divided among the pieces."""
        if not plan.is_current(chunk):
            return  # refined already: the provider is asked the pieces
        pieces = refine(chunk, error.message, error.data)
        if pieces is None:
            raise Refused(f"eth_getLogs refused even the single block {chunk.first}: {error.message[:150]}")
        plan.replace(chunk, pieces)
        self.metrics.splits.labels(provider).inc()
        earlier = answers.pop(chunk)
        for piece in pieces:
            answers[piece] = {
                name: [t for t in logs if piece.holds(t.block_number)] for name, logs in earlier.items()
            }
        self.log(
            "info",
            "log range split",
            provider=provider,
            from_block=chunk.first,
            to_block=chunk.last,
            pieces=len(pieces),
            reason=error.message[:120],
        )

    def _verdict(
        self, plan: ChunkPlan, answers: Dict[Chunk, Dict[str, List[Transfer]]], last: int
    ) -> Tuple[List[Transfer], int]:
        accepted: List[Transfer] = []
        settled: Optional[int] = None  # set where the range stops short
        for chunk in plan.chunks:
            votes = {name: answers[chunk].get(name) for name in self.names}
            result = quorum_logs(votes, self.quorum)
            self.metrics.quorum_check("logs", result.ok)
            self._judge(chunk, votes, result)
            if settled is not None:
                continue
            if not result.ok:
                self.log(
                    "warning",
                    "no provider quorum on logs",
                    from_block=chunk.first,
                    to_block=chunk.last,
                    answered=",".join(result.answered) or "none",
                )
                settled = chunk.first - 1
                continue
            through = result.safe_through(chunk.last)
            accepted.extend(t for t in result.accepted if t.block_number <= through)
            if through < chunk.last:
                self.log("info", "an undecided log holds the range back", block=through + 1)
                settled = through
        return accepted, last if settled is None else settled

    def _judge(self, chunk: Chunk, votes: Dict[str, Optional[List[Transfer]]], result: LogQuorum) -> None:
        for name in result.answered:
            wrong = contradictions(votes[name] or [], result)
            if wrong:
                self.metrics.disagreements.labels(name).inc()
                self.net.judge(
                    name, f"{wrong} log(s) of blocks {chunk.first}..{chunk.last} contradict the quorum"
                )
            elif result.ok:
                self.net.judge(name)

    def read_blocks(self, numbers: Sequence[int]) -> Steps[Dict[int, Block]]:
        """(hash, timestamp) of each block, where a quorum agrees."""
        answers: Dict[str, Dict[int, Block]] = {name: {} for name in self.usable}

        def handle(task: Task, body: bytes) -> Handled:
            answers[task.provider][task.key] = parse_block(body, task.key, task.request_id)
            return OK

        tasks = [
            self.net.task(name, n, "eth_getBlockByNumber", [hex(n), False])
            for n in numbers
            for name in sorted(self.usable)
        ]
        yield from self.net.run(tasks, handle)
        agreed = quorum_blocks(answers, self.quorum)
        for number in numbers:
            self.metrics.quorum_check("blocks", number in agreed)
        for name, blocks in sorted(answers.items()):
            wrong = [n for n, value in blocks.items() if n in agreed and agreed[n] != value]
            if wrong:
                self.metrics.disagreements.labels(name).inc()
                self.net.judge(name, f"blocks {wrong[:5]} contradict the quorum")
            elif blocks:
                self.net.judge(name)
        return agreed
