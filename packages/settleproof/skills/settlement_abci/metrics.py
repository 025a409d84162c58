"""The skill's Prometheus metrics: one registry per skill instance, held by a skill Model.

A registry of our own (not prometheus-client's global one) so that several
agents in one process (tests) never share counters, and whoever exposes the
metrics serves exactly this skill's. Each area registers its metrics in this
registry (`webhooks`, `durability`, `consensus` and `inputs` below; `models.RpcHealth`
registers `rpc_metrics.RpcMetrics` here).

`webhook_delivery_success_rate` is
`webhook_deliveries_total{outcome="delivered"} / sum(webhook_deliveries_total)`.
Deliveries and latency are counted by the agent that POSTed (the keeper);
dead letters, outbox depth and attempts per event by every agent from the agreed state.
"""

from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aea.skills.base import Model

from packages.settleproof.skills.settlement_abci.rpc_metrics import LATENCY_BUCKETS_MS


ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 50)
VERIFICATION_BUCKETS_S = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 900, 3600, 4 * 3600, 24 * 3600)


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
        self.redeliveries = Counter(
            "webhook_redeliveries_total",
            "Events sent again because the merchant still listed their invoice after a reported 2xx",
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "webhook_outbox_depth",
            "Events waiting in the agreed outbox after the last checkpoint",
            registry=registry,
        )
        self.verification_latency = Histogram(
            "invoice_verification_latency_seconds",
            "From the block time at which the agents agreed on a confirmed payment to the merchant's 2xx",
            buckets=VERIFICATION_BUCKETS_S,
            registry=registry,
        )
        self.dlq_depth = Gauge(
            "webhook_dlq_depth",
            "Events in the agreed dead-letter queue after the last committed state",
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


class DurabilityMetrics:
    """What the committed state and its recovery count; every agent counts the same agreed data."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every metric once."""
        self.duplicates_dropped = Counter(
            "duplicate_events_dropped_total",
            "Agreed payments dropped because their transaction already paid an invoice (re-scanned blocks)",
            registry=registry,
        )
        self.reorgs = Counter(
            "chain_reorg_detected_total",
            "Periods in which the chain no longer held the checkpoint block (a reorg deeper than the confirmations)",
            registry=registry,
        )
        self.halted_at = Gauge(
            "chain_reorg_halted_block",
            "The checkpoint block the chain no longer holds while the service is halted; 0 when not halted",
            registry=registry,
        )
        self.checkpoint = Gauge(
            "settlement_checkpoint_block",
            "The last committed checkpoint block (-1 before the first scan)",
            registry=registry,
        )
        self.commits = Gauge(
            "settlement_commit_seq",
            "How many Checkpoint rounds have committed since the service first started",
            registry=registry,
        )

    def record_commit(self, checkpoint: Optional[int], seq: int, reorg_block: Optional[int]) -> None:
        """One committed Checkpoint round."""
        self.checkpoint.set(-1 if checkpoint is None else checkpoint)
        self.commits.set(seq)
        if reorg_block is not None:
            self.reorgs.inc()
        self.halted_at.set(0 if reorg_block is None else reorg_block)


class ConsensusMetrics:
    """What the rounds' transitions count, on every agent (each agent sees the same transitions)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every metric once."""
        self.keeper_selections = Counter(
            "keeper_selection_rounds_total", "SelectKeeper rounds entered (one per period, more on retries)",
            registry=registry,
        )
        self.keeper_failovers = Counter(
            "keeper_failover_total", "KeeperFailover rounds entered: a keeper stayed silent past its timeout",
            registry=registry,
        )
        self.retries = Counter(
            "consensus_round_retries_total",
            "Rounds that ended without agreement (no majority or round timeout) and were run again, by round",
            ["round"],
            registry=registry,
        )
        self.agreement_held = Counter(
            "agreement_held_total",
            "FetchLogsQuorum rounds whose range stopped before what a threshold of agents scanned, by reason",
            ["reason"],
            registry=registry,
        )
        self.byzantine_payloads = Counter(
            "byzantine_payloads_total",
            "Payloads refused at the door (malformed or impossible: no honest agent sends them), by round and reason",
            ["round", "reason"],
            registry=registry,
        )


class InputMetrics:
    """What this agent left out of its observations: inputs over their bounds (`bounds.py`), and dust.

    Each agent counts what it read itself; the counts are entries, not reads, so a
    rate shows how much is being left out.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every metric once."""
        self.truncated = Counter(
            "inputs_truncated_total",
            "Entries left out because an input passed its bound, by input: invoices beyond the first "
            "MAX_OPEN_INVOICES by uuid (not watched meanwhile); payments beyond the count or size bound "
            "of an observation (their blocks are read again next period)",
            ["input"],
            registry=registry,
        )
        self.unpayable = Counter(
            "transfers_unpayable_total",
            "Transfers to a watched receiver that could pay no open invoice (below every amount, from "
            "another payer, before the invoice's block), left out of observations",
            registry=registry,
        )


class Metrics(Model):
    """Holds the skill's registry and the metrics registered in it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """A fresh registry per skill instance."""
        super().__init__(*args, **kwargs)
        self.registry = CollectorRegistry()
        self.webhooks = WebhookMetrics(self.registry)
        self.durability = DurabilityMetrics(self.registry)
        self.consensus = ConsensusMetrics(self.registry)
        self.inputs = InputMetrics(self.registry)
