"""The Grafana dashboard only queries metrics the agents export, with the labels they carry."""

import json
import re
from pathlib import Path
from typing import Dict, Set

from prometheus_client import CollectorRegistry

from packages.settleproof.skills.settlement_abci.metrics import (
    ConsensusMetrics,
    DurabilityMetrics,
    InputMetrics,
    WebhookMetrics,
)
from packages.settleproof.skills.settlement_abci.rpc_metrics import RpcMetrics


DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "settleproof.json"


def exported() -> Dict[str, Set[str]]:
    """Every series name an agent's registry exports (with _total/_bucket suffixes) -> its labels."""
    registry = CollectorRegistry()
    for metrics in (WebhookMetrics, DurabilityMetrics, ConsensusMetrics, InputMetrics, RpcMetrics):
        metrics(registry)  # type: ignore[operator]
    series: Dict[str, Set[str]] = {}
    for family in registry.collect():
        labels = set(getattr(registry._names_to_collectors[family.name], "_labelnames", ()))  # pylint: disable=protected-access
        for suffix in ("", "_total", "_bucket", "_count", "_sum"):
            series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def test_every_query_names_an_exported_series_and_its_labels() -> None:
    """Each panel's expressions use series the registry has; `by (...)` and matchers use real labels."""
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported()
    assert dashboard["uid"] == "settleproof" and len(dashboard["panels"]) >= 12
    seen = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = [n for n in re.findall(r"\b[a-z][a-z_]+\b", expr) if n.endswith(
                ("_total", "_bucket", "_depth", "_block", "_seq", "_state")
            )]
            assert names, expr
            for name in names:
                assert name in known, f"{panel['title']}: {name} is not exported"
                seen.add(name)
            for group in re.findall(r"by \(([^)]*)\)", expr):
                for label in (g.strip() for g in group.split(",")):
                    assert any(label in known[n] for n in names), f"{expr}: no series has label {label}"
            for matcher in re.findall(r"\{([^}]*)\}", expr):
                label = matcher.split("=")[0].strip()
                assert any(label in known[n] for n in names), f"{expr}: no series has label {label}"
    # the headline metrics are all on the dashboard
    assert {
        "invoice_verification_latency_seconds_bucket", "webhook_deliveries_total", "webhook_dlq_total",
        "rpc_quorum_failures_total", "rpc_provider_latency_ms_bucket", "duplicate_events_dropped_total",
        "keeper_selection_rounds_total", "keeper_failover_total", "consensus_round_retries_total",
        "webhook_outbox_depth", "settlement_checkpoint_block", "rpc_circuit_breaker_state", "inputs_truncated_total",
    } <= seen
