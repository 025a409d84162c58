"""`settleproof status` table cells from an agent's healthcheck and metrics (no agent needed)."""

from typing import Optional

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from settleproof.status import HEADER, parse_metrics, row, table


AGENT = {"name": "agent0", "address": "0xA", "metrics_port": 1}
HEALTH = {"agent_address": "0xA", "current_round": "dedupe_round", "period": 4}


def exposition(checkpoint: Optional[int] = None) -> str:
    """What an agent's /metrics serves, with two providers and two dead letters."""
    registry = CollectorRegistry()
    Gauge("webhook_outbox_depth", "d", registry=registry).set(5)
    Gauge("webhook_dlq_depth", "d", registry=registry).set(2)
    breaker = Gauge("rpc_circuit_breaker_state", "d", ["provider"], registry=registry)
    breaker.labels("b:2").set(2)
    breaker.labels("a:1").set(0)
    if checkpoint is not None:
        Gauge("settlement_checkpoint_block", "d", registry=registry).set(checkpoint)
    return generate_latest(registry).decode()


def test_row_reads_health_and_metrics() -> None:
    """Round and period from the healthcheck; outbox, DLQ depth and breakers from the metrics; no checkpoint yet."""
    cells = row(AGENT, HEALTH, parse_metrics(exposition()))
    assert cells == ["agent0", "0xA", "dedupe_round", "4", "-", "5", "2", "a:1=closed, b:2=open"]


def test_row_uses_the_checkpoint_gauge_when_exported() -> None:
    """Once the skill exports the checkpoint block, the column shows it."""
    assert row(AGENT, HEALTH, parse_metrics(exposition(checkpoint=1234)))[4] == "1234"
    assert row(AGENT, HEALTH, parse_metrics(exposition(checkpoint=-1)))[4] == "-"  # before the first scan


def test_an_agent_that_does_not_answer_reads_down() -> None:
    """No healthcheck: the row says so and leaves the rest empty."""
    assert row(AGENT, None, None) == ["agent0", "0xA", "down"] + ["-"] * 5


def test_table_aligns_columns() -> None:
    """A header and one line per agent, columns aligned."""
    text = table([row(AGENT, HEALTH, parse_metrics(exposition())), row(AGENT, None, None)])
    lines = text.splitlines()
    assert lines[0].split() == HEADER and len(lines) == 3
    assert lines[1].index("dedupe_round") == lines[0].index("round")
