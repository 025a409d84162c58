"""Requests to several JSON-RPC providers, without doing any I/O: batches out, replies in.

`Exchange.run` is a generator: it yields a `Batch` (wait `delay` seconds, then
send every call at once and collect the replies within `timeout`), receives
the replies in the same order, and decides what comes next: a retry after
the policy's backoff, a follow-up request, or nothing. The agent's behaviour
drives it with the framework's HTTP and `sleep`; tests drive the very same
code with aiohttp. Every request checks the provider's circuit breaker first,
and every failure is counted, logged with the provider's name, and fed to the
breaker; nothing here raises because a provider misbehaved.
"""

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Tuple, TypeVar
from urllib.parse import urlparse

from packages.settleproof.skills.settlement_abci.breaker import BreakerState, Breakers
from packages.settleproof.skills.settlement_abci.retry_policy import RetryPolicy
from packages.settleproof.skills.settlement_abci.rpc_metrics import RpcMetrics
from packages.settleproof.skills.settlement_abci.transfers import MalformedReply, RpcError


T = TypeVar("T")
Log = Callable[..., None]  # log(level, message, **fields)


@dataclass(frozen=True)
class Provider:
    """A provider's URL and the name it is logged and counted under (no path: URLs hold keys)."""

    name: str
    url: str


def providers_of(urls: Sequence[str]) -> Tuple[Provider, ...]:
    """Name each URL by its host and port, numbering repeats."""
    named: List[Provider] = []
    for url in urls:
        parsed = urlparse(url)
        base = parsed.hostname or "provider"
        base = f"{base}:{parsed.port}" if parsed.port else base
        name, n = base, 1
        while any(p.name == name for p in named):
            n += 1
            name = f"{base}#{n}"
        named.append(Provider(name, url))
    return tuple(named)


@dataclass(frozen=True)
class ExchangeConfig:
    """Per-request limits."""

    request_timeout: float
    retry: RetryPolicy = RetryPolicy()
    max_reply_bytes: int = 16 * 1024 * 1024
    max_batch: int = 64


@dataclass(frozen=True)
class RpcCall:
    """One HTTP POST of a JSON-RPC body."""

    provider: str
    url: str
    body: bytes


@dataclass(frozen=True)
class RpcReply:
    """What came back: `status == 0` with `error` when no HTTP reply arrived."""

    status: int
    body: bytes = b""
    error: str = ""
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class Batch:
    """Wait `delay` seconds, send all `calls` at once, collect replies for at most `timeout`."""

    calls: Tuple[RpcCall, ...]
    delay: float
    timeout: float


Steps = Generator[Batch, List[RpcReply], T]


@dataclass(eq=False)
class Task:  # pylint: disable=too-many-instance-attributes
    """One question to one provider, across its attempts."""

    provider: str
    key: Any
    method: str
    params: List[Any]
    request_id: int
    attempt: int = 1
    first_sent: Optional[float] = None
    not_before: float = 0.0


class Refused(MalformedReply):
    """A reply that no retry can fix; the task fails at once."""


# What a reply handler returns: the outcome to count, and follow-up tasks.
Handled = Tuple[str, List[Task]]
OK: Handled = ("ok", [])


class Exchange:  # pylint: disable=too-many-arguments,too-many-instance-attributes
    """Runs tasks against providers with timeouts, retries and breakers."""

    def __init__(
        self,
        config: ExchangeConfig,
        providers: Sequence[Provider],
        breakers: Breakers,
        metrics: RpcMetrics,
        log: Log,
        clock: Callable[[], float],
        deadline: float,
    ) -> None:
        """`deadline` (on `clock`) ends every run: what is still pending then fails."""
        self.config = config
        self.urls: Dict[str, str] = {p.name: p.url for p in providers}
        self.breakers = breakers
        self.metrics = metrics
        self.log = log
        self.clock = clock
        self.deadline = deadline
        self._ids = itertools.count(1)
        self._given_up: Counter = Counter()
        for name in self.urls:
            metrics.breaker_state(name, breakers[name].current(clock()))

    def task(self, provider: str, key: Any, method: str, params: List[Any]) -> Task:
        """A new task with a fresh JSON-RPC id."""
        return Task(provider, key, method, params, next(self._ids))

    def run(self, tasks: List[Task], handle: Callable[[Task, bytes], Handled]) -> Steps[None]:
        """Ask until every task is answered or given up; `handle` parses a 2xx body.

        `handle` raises `MalformedReply` (retried) or `Refused` (not retried).
        """
        pending = list(tasks)
        while pending:
            now = self.clock()
            wait = max(0.0, min(t.not_before for t in pending) - now)
            time_left = self.deadline - now - wait
            if time_left <= 0:
                for task in pending:
                    self._give_up(task, "no time left in this period")
                break
            due = [t for t in pending if t.not_before <= now + wait][: self.config.max_batch]
            pending = [t for t in pending if t not in due]
            sending = [t for t in due if self._allowed(t, now + wait)]
            if not sending:
                continue
            for task in sending:
                task.first_sent = now + wait if task.first_sent is None else task.first_sent
            calls = tuple(
                RpcCall(t.provider, self.urls[t.provider], self._body(t)) for t in sending
            )
            replies = yield Batch(calls, wait, min(self.config.request_timeout, time_left))
            for task, reply in zip(sending, replies):
                pending.extend(self._answered(task, reply, handle))
        for (provider, method, why), count in sorted(self._given_up.items()):
            self.log("info", "provider left out", provider=provider, method=method, requests=count, why=why)
        self._given_up.clear()

    def judge(self, provider: str, problem: Optional[str] = None) -> None:
        """Tell the breaker whether a parsed answer held up against the quorum."""
        breaker = self.breakers[provider]
        if problem is None:
            breaker.success()
        else:
            breaker.failure(self.clock())
            self.log("warning", "provider contradicted", provider=provider, problem=problem)
        self.metrics.breaker_state(provider, breaker.current(self.clock()))

    @staticmethod
    def _body(task: Task) -> bytes:
        document = {"jsonrpc": "2.0", "id": task.request_id, "method": task.method, "params": task.params}
        return json.dumps(document, separators=(",", ":")).encode()

    def _allowed(self, task: Task, at: float) -> bool:
        if self.breakers[task.provider].allow(at):
            return True
        self.metrics.requests.labels(task.provider, "skipped").inc()
        self._give_up(task, "circuit breaker open")
        return False

    def _answered(self, task: Task, reply: RpcReply, handle: Callable[[Task, bytes], Handled]) -> List[Task]:
        outcome, problem = self._transport_problem(reply)
        if problem is None:
            try:
                outcome, follow_up = handle(task, reply.body)
                self.metrics.request(task.provider, outcome, reply.elapsed_ms)
                return follow_up
            except Refused as error:
                self.metrics.request(task.provider, "refused", reply.elapsed_ms)
                self._failed(task, str(error))
                self._give_up(task, "not retried")
                return []
            except RpcError as error:
                outcome, problem = "rpc_error", str(error)
            except MalformedReply as error:
                outcome, problem = "malformed", str(error)
            except Exception as error:  # pylint: disable=broad-except
                # e.g. RecursionError on absurdly nested JSON: still this provider's fault
                outcome, problem = "malformed", f"unreadable reply ({error.__class__.__name__})"
        self.metrics.request(task.provider, outcome, reply.elapsed_ms)
        return self._retry(task, problem)

    def _transport_problem(self, reply: RpcReply) -> Tuple[str, Optional[str]]:
        if reply.status == 0:
            timed_out = "timed out" in reply.error
            return ("timeout" if timed_out else "transport_error"), f"no reply: {reply.error[-200:]}"
        if not 200 <= reply.status < 300:
            return "http_error", f"HTTP {reply.status}"
        if len(reply.body) > self.config.max_reply_bytes:
            return "malformed", f"reply of {len(reply.body)} bytes exceeds {self.config.max_reply_bytes}"
        return "ok", None

    def _failed(self, task: Task, problem: str) -> None:
        breaker = self.breakers[task.provider]
        breaker.failure(self.clock())
        self.metrics.breaker_state(task.provider, breaker.current(self.clock()))
        self.log(
            "warning",
            "provider failed",
            provider=task.provider,
            method=task.method,
            attempt=task.attempt,
            problem=problem[:200],
        )

    def _retry(self, task: Task, problem: str) -> List[Task]:
        self._failed(task, problem)
        now = self.clock()
        wait = self.config.retry.next_wait(task.attempt, task.first_sent or now, now)
        if wait is None or now + wait >= self.deadline:
            self._give_up(task, "retries exhausted")
            return []
        if self.breakers[task.provider].current(now) is not BreakerState.CLOSED:
            self._give_up(task, "circuit breaker opened")
            return []
        retry = self.task(task.provider, task.key, task.method, task.params)
        retry.attempt, retry.first_sent, retry.not_before = task.attempt + 1, task.first_sent, now + wait
        return [retry]

    def _give_up(self, task: Task, why: str) -> None:
        self._given_up[(task.provider, task.method, why)] += 1
