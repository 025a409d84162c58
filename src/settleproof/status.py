"""`settleproof status`: a running devnet's live state, one table row per agent.

It reads `D/devnet.json` for the agents and their ports, then each agent's own
`/healthcheck` and `/metrics` (the same endpoints Prometheus scrapes), so what
it prints is what the agents report, not what the devnet believes.
"""

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import click
from prometheus_client.parser import text_string_to_metric_families


HEADER = ["agent", "address", "round", "period", "checkpoint", "outbox", "dlq", "providers"]
BREAKER = {0: "closed", 1: "half-open", 2: "open"}
#: Gauges the table reads when the agents export them; "-" (checkpoint) or a fallback otherwise.
CHECKPOINT = "settlement_checkpoint_block"
DLQ_DEPTH = "webhook_dlq_depth"
TIMEOUT = 3.0

Samples = Dict[str, List[Tuple[Dict[str, str], float]]]


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition -> sample name -> [(labels, value)]."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def _number(value: Optional[float]) -> str:
    return "-" if value is None else str(int(value))


def _total(samples: Samples, name: str) -> Optional[float]:
    found = samples.get(name)
    return None if found is None else sum(value for _, value in found)


def _checkpoint(samples: Samples) -> Optional[float]:
    """The committed checkpoint block; None when not exported or before the first scan (-1)."""
    found = _total(samples, CHECKPOINT)
    return None if found is None or found < 0 else found


def providers(samples: Samples) -> str:
    """`host:port=state` per provider, from the circuit-breaker gauge."""
    gauge = samples.get("rpc_circuit_breaker_state", [])
    states = sorted((labels.get("provider", "?"), value) for labels, value in gauge)
    return ", ".join(f"{name}={BREAKER.get(int(value), str(value))}" for name, value in states) or "-"


def row(agent: Dict[str, Any], health: Optional[Dict[str, Any]], samples: Optional[Samples]) -> List[str]:
    """One agent's cells; an agent that did not answer reads `down`."""
    if health is None or samples is None:
        return [agent.get("name", "?"), agent.get("address", "?"), "down"] + ["-"] * (len(HEADER) - 3)
    dlq = _total(samples, DLQ_DEPTH)
    return [
        agent.get("name", "?"),
        health.get("agent_address") or agent.get("address", "?"),
        str(health.get("current_round") or "-"),
        _number(health.get("period")),
        _number(_checkpoint(samples)),
        _number(_total(samples, "webhook_outbox_depth")),
        _number(dlq),
        providers(samples),
    ]


def table(rows: List[List[str]]) -> str:
    """Left-aligned columns under a header."""
    lines = [HEADER] + rows
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _get(url: str) -> Optional[str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # nosec: loopback URLs from devnet.json
            return response.read().decode("utf-8")
    except (urllib.error.URLError, OSError):
        return None


def agent_state(agent: Dict[str, Any], host: str = "127.0.0.1") -> Tuple[Optional[Dict], Optional[Samples]]:
    """The agent's healthcheck document and metrics, or None for what did not answer."""
    port = agent.get("metrics_port")
    if not port:
        return None, None
    health = _get(f"http://{host}:{port}/healthcheck")
    metrics = _get(f"http://{host}:{port}/metrics")
    return (None if health is None else json.loads(health)), (None if metrics is None else parse_metrics(metrics))


def status_table(data_dir: Path) -> str:
    """The table for the devnet under `data_dir`."""
    manifest = json.loads((data_dir / "devnet.json").read_text())
    return table([row(agent, *agent_state(agent)) for agent in manifest["agents"]])


@click.command(name="status")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".devnet"),
              show_default=True, help="The devnet's data dir (where devnet.json is).")
def status(data_dir: Path) -> None:
    """Print each agent's round, period, checkpoint, outbox, DLQ and provider breakers, live."""
    if not (data_dir / "devnet.json").exists():
        raise click.ClickException(f"no devnet.json under {data_dir}: is `settleproof devnet up` running there?")
    click.echo(status_table(data_dir))
