"""The quorum reader against in-memory providers: what it accepts, how far it settles, whom it blames.

No network and no waiting: a fake clock moves by each batch's delay and, for a
provider that never answers, by the batch's timeout.
"""

import json
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from packages.settleproof.skills.settlement_abci.breaker import Breakers, BreakerState
from packages.settleproof.skills.settlement_abci.quorum import quorum_logs
from packages.settleproof.skills.settlement_abci.retry_policy import RetryPolicy
from packages.settleproof.skills.settlement_abci.rpc_exchange import (
    ExchangeConfig,
    Provider,
    RpcReply,
    Steps,
    providers_of,
)
from packages.settleproof.skills.settlement_abci.rpc_metrics import RpcMetrics
from packages.settleproof.skills.settlement_abci.rpc_reader import QuorumReader
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    RECEIVERS,
    TOKENS,
    examples,
    log_entry,
    make_transfer,
    provider_answers,
    variant,
)
from packages.settleproof.skills.settlement_abci.transfers import Transfer


@dataclass
class FakeProvider:  # pylint: disable=too-many-instance-attributes
    """A JSON-RPC provider in memory. `logs=None` fails every eth_getLogs with a 503."""

    logs: Optional[List[Transfer]] = field(default_factory=list)
    head: int = 200
    silent: bool = False
    refused: bool = False
    max_range: Optional[int] = None
    body: Optional[bytes] = None  # answer every request with these bytes
    wrong_id: bool = False
    asked: List[Tuple[str, Any]] = field(default_factory=list)

    def answer(self, body: bytes) -> Optional[RpcReply]:
        """The reply to a request body; None for no reply at all."""
        call = json.loads(body)
        self.asked.append((call["method"], call["params"]))
        if self.silent:
            return None
        if self.refused:
            return RpcReply(0, error="Cannot connect to host: connection refused")
        if self.body is not None:
            return RpcReply(200, self.body)
        result = self._result(call["method"], call["params"])
        if isinstance(result, RpcReply):
            return result
        reply_id = call["id"] + 1 if self.wrong_id else call["id"]
        return RpcReply(200, json.dumps({"jsonrpc": "2.0", "id": reply_id, **result}).encode(), elapsed_ms=3.0)

    def _result(self, method: str, params: List[Any]) -> Any:
        if method == "eth_blockNumber":
            return {"result": hex(self.head)}
        if method == "eth_getBlockByNumber":
            number = int(params[0], 16)
            block_hash = make_transfer(block_number=number).block_hash
            return {"result": {"number": params[0], "hash": block_hash, "timestamp": hex(1_700_000_000 + number)}}
        first, last = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
        if self.logs is None:
            return RpcReply(503, b"busy")
        if self.max_range is not None and last - first + 1 > self.max_range:
            return {"error": {"code": -32005, "message": "query returned more than 10000 results"}}
        return {"result": [log_entry(t) for t in self.logs if first <= t.block_number <= last]}


class FakeClock:
    """Seconds that only move when told to."""

    def __init__(self) -> None:
        """Start at 1000."""
        self.now = 1000.0

    def __call__(self) -> float:
        """Now."""
        return self.now


def drive(steps: Steps[Any], network: Dict[str, FakeProvider], clock: FakeClock, cost: float = 0.01) -> Any:
    """Answer every batch from the fake providers; a batch takes `cost` seconds, or its whole
    timeout when a provider stays silent."""
    replies: Optional[List[RpcReply]] = None
    for _ in range(10_000):
        try:
            batch = steps.send(replies)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value
        clock.now += batch.delay
        answers = [network[c.url].answer(c.body) for c in batch.calls]
        clock.now += batch.timeout if any(a is None for a in answers) else cost
        replies = [a or RpcReply(0, error="timed out", elapsed_ms=batch.timeout * 1000) for a in answers]
    raise AssertionError("the reader never finished")


@dataclass
class Setup:  # pylint: disable=too-many-instance-attributes
    """A reader over named fake providers, with its log and metrics."""

    network: Dict[str, FakeProvider]
    quorum: int = 2
    max_log_range: int = 1000
    max_lag_blocks: int = 10
    budget: float = 60.0
    max_batch: int = 64
    clock: FakeClock = field(default_factory=FakeClock)
    breakers: Breakers = field(default_factory=lambda: Breakers(3, 30.0))
    metrics: RpcMetrics = field(default_factory=lambda: RpcMetrics(CollectorRegistry()))
    lines: List[str] = field(default_factory=list)

    def reader(self) -> QuorumReader:
        """A fresh period's reader."""
        retry = RetryPolicy(attempts=3, budget_seconds=5.0, initial_seconds=0.1, max_wait_seconds=1.0, jitter_seconds=0.1)
        config = ExchangeConfig(request_timeout=2.0, retry=retry, max_reply_bytes=100_000, max_batch=self.max_batch)
        providers = [Provider(name, name) for name in self.network]
        return QuorumReader(
            config, providers, self.quorum, (self.max_log_range, self.max_lag_blocks),
            (self.breakers, self.metrics), self.log, self.clock, self.clock() + self.budget,
        )  # fmt: skip

    def log(self, level: str, message: str, **fields: Any) -> None:
        """Collect log lines."""
        self.lines.append(f"{level} {message} | " + " ".join(f"{k}={v}" for k, v in fields.items()))

    def logs(self, first: int = 100, last: int = 104, reader: Optional[QuorumReader] = None) -> Tuple[List[Transfer], int]:
        """Run `read_logs` over `[first, last]`."""
        steps = (reader or self.reader()).read_logs(first, last, TOKENS, RECEIVERS)
        return drive(steps, self.network, self.clock)

    def head(self, reader: Optional[QuorumReader] = None) -> Optional[int]:
        """Run `read_head`."""
        return drive((reader or self.reader()).read_head(), self.network, self.clock)


def without_twins(logs: Optional[List[Transfer]]) -> Optional[List[Transfer]]:
    """An answer a provider could give: one log per (block, log index)."""
    if logs is None:
        return None
    seen: Dict[Tuple[int, int], Transfer] = {}
    for log in logs:
        seen.setdefault(log.position, log)
    return list(seen.values())


@examples(120)
@given(
    provider_answers(max_providers=4),
    st.integers(1, 4),
    st.integers(1, 5),
    st.lists(st.none() | st.integers(1, 3), min_size=4, max_size=4),
)
def test_accepts_exactly_what_quorum_providers_returned_whatever_the_chunking(answers, quorum, max_range, limits):
    """Chunked, refused, split and retried: the reader accepts exactly the logs at least `quorum`
    providers returned identically, and settles exactly as far as the whole-range rule allows."""
    answers = {name: without_twins(logs) for name, logs in answers.items()}
    quorum = min(quorum, len(answers))
    network = {
        name: FakeProvider(logs=logs, max_range=limit)
        for (name, logs), limit in zip(answers.items(), limits)
    }
    accepted, settled = Setup(network, quorum=quorum, max_log_range=max_range).logs(100, 104)
    expected = quorum_logs(answers, quorum)
    if not expected.ok:
        assert (accepted, settled) == ([], 99)
        return
    assert settled == expected.safe_through(104)
    assert accepted == [t for t in expected.accepted if t.block_number <= settled]
    votes = {t: sum(1 for logs in answers.values() if logs and t in logs) for t in accepted}
    assert all(count >= quorum for count in votes.values())


def test_a_lie_is_refuted_counted_and_logged_by_provider_name():
    """c adds a log and alters another: neither is accepted; c's disagreement is counted."""
    paid = make_transfer(block_number=101)
    fake = make_transfer(block_number=103, log_index=4, value=10**24)
    setup = Setup({"a": FakeProvider([paid]), "b": FakeProvider([paid]), "c": FakeProvider([variant(paid, 1), fake])})
    assert setup.logs() == ([paid], 104)
    assert setup.metrics.value("rpc_provider_disagreements_total", provider="c") == 1
    assert setup.metrics.value("rpc_provider_disagreements_total", provider="a") == 0
    assert any("provider contradicted" in line and "provider=c" in line for line in setup.lines)
    assert setup.breakers["c"].consecutive_failures == 1 and setup.breakers["a"].consecutive_failures == 0


def test_chunks_are_the_same_for_every_provider_and_refusals_split_them_for_all():
    """a refuses more than 2 blocks: the 5-block chunk is split for everybody, and b and c are not asked again."""
    logs = [make_transfer(block_number=n) for n in (100, 102, 104)]
    network = {"a": FakeProvider(logs, max_range=2), "b": FakeProvider(logs), "c": FakeProvider(logs)}
    setup = Setup(network, max_log_range=5)
    assert setup.logs() == (logs, 104)
    spans = {name: [(p[0]["fromBlock"], p[0]["toBlock"]) for m, p in provider.asked] for name, provider in network.items()}
    assert spans["b"] == spans["c"] == [("0x64", "0x68")]
    assert spans["a"][0] == ("0x64", "0x68") and len(spans["a"]) > 2
    assert setup.metrics.value("rpc_log_range_splits_total", provider="a") >= 1
    assert setup.metrics.value("rpc_quorum_checks_total", check="logs") >= 2  # one per final chunk


def test_a_provider_refusing_even_one_block_gives_up_clearly_and_the_others_decide():
    """Splitting stops at a single block: the provider fails there, named, and the rest still settles."""
    logs = [make_transfer(block_number=101)]
    network = {"a": FakeProvider(logs, max_range=0), "b": FakeProvider(logs), "c": FakeProvider(logs)}
    setup = Setup(network)
    assert setup.logs(100, 103) == (logs, 103)
    assert any("refused even the single block" in line and "provider=a" in line for line in setup.lines)


@pytest.mark.parametrize(
    "bad",
    [
        FakeProvider(body=b"<html>502</html>"),
        FakeProvider(body=b'{"jsonrpc":"2.0","id":1,"result":[{"address":'),
        FakeProvider(body=b" " * 90_000 + b"{}" + b" " * 20_000),
        FakeProvider(body=b"[" * 50_000 + b"]" * 50_000),
        FakeProvider(wrong_id=True),
        FakeProvider(refused=True),
        FakeProvider(silent=True),
        FakeProvider(logs=None),
    ],
    ids=["garbage", "truncated", "too large", "deeply nested", "wrong id", "refused", "silent", "503"],
)
def test_a_failing_provider_is_retried_then_left_out_never_raising(bad):
    """Each failure is logged with the provider's name and what was wrong, retried per policy, fed
    to the breaker; the two others still decide."""
    paid = make_transfer(block_number=102)
    setup = Setup({"a": FakeProvider([paid]), "b": FakeProvider([paid]), "c": bad})
    assert setup.logs() == ([paid], 104)
    failures = [line for line in setup.lines if "provider failed" in line and "provider=c" in line]
    assert len(failures) == 3 and all("problem=" in line for line in failures)
    assert len(bad.asked) == 3  # three attempts, then the breaker (threshold 3) is open
    assert setup.breakers["c"].current(setup.clock()) is BreakerState.OPEN


def test_fewer_than_quorum_answers_settle_nothing_and_count_a_failure():
    """Two of three fail: the range is not settled at all."""
    setup = Setup({"a": FakeProvider([make_transfer()]), "b": FakeProvider(refused=True), "c": FakeProvider(logs=None)})
    assert setup.logs() == ([], 99)
    assert setup.metrics.value("rpc_quorum_failures_total", check="logs") == 1
    assert any("no provider quorum on logs" in line for line in setup.lines)


def test_head_from_a_quorum_lagging_provider_left_out_runaway_counted():
    """Heads 200, 201, 150, 9000 (quorum 2): head 201; the laggard is counted and not asked for logs;
    the runaway is counted but may still answer (the logs quorum checks it)."""
    network = {n: FakeProvider(head=h) for n, h in (("a", 200), ("b", 201), ("lag", 150), ("far", 9000))}
    setup = Setup(network)
    reader = setup.reader()
    assert setup.head(reader) == 201
    assert reader.usable == {"a", "b", "far"}
    for name in ("lag", "far"):
        assert setup.metrics.value("rpc_provider_head_outliers_total", provider=name) == 1
    setup.logs(reader=reader)
    assert [m for m, _ in network["lag"].asked] == ["eth_blockNumber"]


def test_no_head_quorum():
    """One head only: None, and the failed check is counted."""
    setup = Setup({"a": FakeProvider(), "b": FakeProvider(refused=True), "c": FakeProvider(silent=True)})
    assert setup.head() is None
    assert setup.metrics.value("rpc_quorum_failures_total", check="head") == 1
    assert setup.metrics.value("rpc_quorum_checks_total", check="head") == 1


def test_open_breaker_skips_the_provider_until_one_probe_after_the_cool_down():
    """Open: c is not asked at all. After the cool-down: a single eth_blockNumber probe; it succeeds and c is back."""
    network = {"a": FakeProvider(), "b": FakeProvider(), "c": FakeProvider(refused=True)}
    setup = Setup(network)
    setup.head()
    assert setup.breakers["c"].current(setup.clock()) is BreakerState.OPEN
    asked = len(network["c"].asked)
    setup.head()
    assert len(network["c"].asked) == asked
    assert setup.metrics.value("rpc_requests_total", provider="c", outcome="skipped") == 1
    network["c"].refused = False
    setup.clock.now += 30.0
    reader = setup.reader()
    setup.head(reader)
    assert len(network["c"].asked) == asked + 1
    assert setup.breakers["c"].current(setup.clock()) is BreakerState.CLOSED and "c" in reader.usable
    assert setup.metrics.value("rpc_circuit_breaker_state", provider="c") == 0


def test_the_period_deadline_settles_what_was_decided_in_time():
    """Chunks of two blocks, one chunk per batch, a second per batch, 1.5 s of budget: two chunks settle."""
    logs = [make_transfer(block_number=n) for n in (100, 103, 105)]
    network = {"a": FakeProvider(logs), "b": FakeProvider(logs)}
    setup = Setup(network, max_log_range=2, max_batch=2, budget=1.5)
    steps = setup.reader().read_logs(100, 105, TOKENS, RECEIVERS)
    assert drive(steps, network, setup.clock, cost=1.0) == (logs[:2], 103)
    assert any("no time left" in line for line in setup.lines)
    assert setup.metrics.value("rpc_quorum_failures_total", check="logs") == 1


def test_payments_need_an_agreed_block_with_the_logs_hash():
    """read_payments: timestamps from a block quorum; a log whose block hash disagrees stops the range."""
    good = make_transfer(block_number=101)
    reorged = replace(make_transfer(block_number=103), block_hash="0x" + "ee" * 32)
    setup = Setup({n: FakeProvider([good, reorged]) for n in "abc"})
    reader = setup.reader()
    payments, settled = drive(reader.read_payments(100, 104, TOKENS, RECEIVERS), setup.network, setup.clock)
    assert [p.transfer for p in payments] == [good] and settled == 102
    assert payments[0].block_timestamp == 1_700_000_000 + 101
    assert setup.metrics.value("rpc_quorum_checks_total", check="blocks") == 2


def test_narrow_decides_before_any_block_is_read_and_only_ever_shortens():
    """The caller's `narrow` sees the agreed logs first: a log it drops costs no block read; a shorter
    range it returns is kept (and one it returns longer is not)."""
    dust, paid, later = (make_transfer(block_number=b, value=v) for b, v in [(101, 1), (102, 1000), (104, 1000)])
    setup = Setup({n: FakeProvider([dust, paid, later]) for n in "abc"})
    seen: List[Tuple[List[Transfer], int]] = []

    def narrow(transfers: List[Transfer], last: int) -> Tuple[List[Transfer], int]:
        seen.append((transfers, last))
        return [t for t in transfers if t.value >= 1000 and t.block_number <= 103], 103

    steps = setup.reader().read_payments(100, 105, TOKENS, RECEIVERS, narrow)
    payments, settled = drive(steps, setup.network, setup.clock)
    assert seen == [([dust, paid, later], 105)]
    assert [p.transfer for p in payments] == [paid] and settled == 103
    assert setup.metrics.value("rpc_quorum_checks_total", check="blocks") == 1  # block 102 only

    steps = setup.reader().read_payments(100, 102, TOKENS, RECEIVERS, lambda transfers, last: (transfers, 200))
    payments, settled = drive(steps, setup.network, setup.clock)
    assert [p.transfer for p in payments] == [dust, paid] and settled == 102


def test_provider_names_never_carry_a_url_path():
    """URLs often hold API keys: names are host:port, numbered when repeated."""
    names = [p.name for p in providers_of([
        "https://eth.example/v2/SECRET", "http://127.0.0.1:8545", "https://eth.example/v2/OTHER", "http://u:pw@h:1/x",
    ])]  # fmt: skip
    assert names == ["eth.example", "127.0.0.1:8545", "eth.example#2", "h:1"]
    assert not any("SECRET" in n or "pw" in n for n in names)

