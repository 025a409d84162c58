"""The skill's Prometheus metrics: one registry per skill instance, held by a skill Model.

A registry of our own (not prometheus-client's global one) so that several
agents in one process (tests) never share counters, and whoever exposes the
metrics serves exactly this skill's. Each area registers its metrics in this
registry (`webhooks` below; `models.RpcHealth` registers `rpc_metrics.RpcMetrics` here).

`webhook_delivery_success_rate` is
`webhook_deliveries_total{outcome="delivered"} / sum(webhook_deliveries_total)`.
Deliveries and latency are counted by the agent that POSTed (the keeper);
dead letters, outbox depth and attempts per event by every agent from the agreed state.
"""

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aea.skills.base import Model

from packages.settleproof.skills.settlement_abci.rpc_metrics import LATENCY_BUCKETS_MS


ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 50)


class WebhookMetrics:
    """What webhook delivery counts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every metric once."""
        self.registry = registry
        self.deliveries = Counter(
            "webhook_deliveries_total",
            "Webhook POST attempts by outcome (delivered, retry, gone, rejected)",
            ["outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "webhook_delivery_latency_ms",
            "Time from sending a webhook to its reply (or giving up), in milliseconds",
            buckets=LATENCY_BUCKETS_MS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "webhook_dlq_total",
            "Events moved to the dead-letter queue, by reason",
            ["reason"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "webhook_outbox_depth",
            "Events waiting in the agreed outbox after the last checkpoint",
            registry=registry,
        )
        self.attempts = Histogram(
            "webhook_attempts_per_event",
            "Attempts an event took until it was delivered or dead-lettered",
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when never set), for tests and status output."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


class Metrics(Model):
    """Holds the skill's registry and the metrics registered in it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """A fresh registry per skill instance."""
        super().__init__(*args, **kwargs)
        self.registry = CollectorRegistry()
        self.webhooks = WebhookMetrics(self.registry)
