"""What the RPC reader counts, in a registry of its own (the observability issue exposes it).

`rpc_quorum_failure_rate` is `rpc_quorum_failures_total / rpc_quorum_checks_total`.
Providers are labelled by their name (`host:port`), never by URL: URLs often
carry API keys.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from packages.settleproof.skills.settlement_abci.breaker import BreakerState


LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 15000, 30000)


class RpcMetrics:  # pylint: disable=too-many-instance-attributes
    """Counters, a histogram and a gauge about the providers, in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every metric once."""
        self.registry = registry
        self.requests = Counter(
            "rpc_requests_total",
            "JSON-RPC requests by provider and outcome: ok, range_limited, timeout, transport_error, "
            "http_error, malformed, rpc_error, refused (not retried), skipped (breaker open, not sent)",
            ["provider", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "rpc_provider_latency_ms",
            "Time from sending a JSON-RPC request to its reply (or giving up), in milliseconds",
            ["provider"],
            buckets=LATENCY_BUCKETS_MS,
            registry=registry,
        )
        self.checks = Counter(
            "rpc_quorum_checks",
            "Quorum decisions taken, by what was decided (head, logs of a chunk, block)",
            ["check"],
            registry=registry,
        )
        self.failures = Counter(
            "rpc_quorum_failures",
            "Quorum decisions that failed for lack of agreeing providers",
            ["check"],
            registry=registry,
        )
        self.disagreements = Counter(
            "rpc_provider_disagreements",
            "Answers a provider gave that the quorum contradicts",
            ["provider"],
            registry=registry,
        )
        self.outliers = Counter(
            "rpc_provider_head_outliers",
            "Times a provider's head was too far from the quorum head",
            ["provider"],
            registry=registry,
        )
        self.splits = Counter(
            "rpc_log_range_splits",
            "eth_getLogs chunks split because a provider refused their range or result size",
            ["provider"],
            registry=registry,
        )
        self.breaker = Gauge(
            "rpc_circuit_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
            ["provider"],
            registry=registry,
        )

    def unregister(self) -> None:
        """Take every metric out of the registry (so a fresh set can be registered)."""
        for collector in (
            self.requests, self.latency, self.checks, self.failures,
            self.disagreements, self.outliers, self.splits, self.breaker,
        ):  # fmt: skip
            self.registry.unregister(collector)

    def request(self, provider: str, outcome: str, latency_ms: float) -> None:
        """One request's outcome and latency."""
        self.requests.labels(provider, outcome).inc()
        self.latency.labels(provider).observe(latency_ms)

    def quorum_check(self, check: str, ok: bool) -> None:
        """One quorum decision."""
        self.checks.labels(check).inc()
        if not ok:
            self.failures.labels(check).inc()

    def breaker_state(self, provider: str, state: BreakerState) -> None:
        """The provider's breaker state."""
        self.breaker.labels(provider).set(state.value)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when never set), for tests and status output."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found
