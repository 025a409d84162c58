"""A real agent serves `/metrics` and `/healthcheck` over HTTP, and `settleproof status` reads them.

One agent on the devnet with providers that refuse every connection, so the RPC
metrics move (errors, open breakers) without any chain behind them.
"""

from __future__ import annotations

import json
import re
import subprocess  # nosec: we start our own CLI
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest
import yaml

from settleproof.devnet.agents import FrameworkSettings
from settleproof.devnet.network import Devnet
from settleproof.status import parse_metrics
from tests.devnet_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    OFFLINE_ENV,
    devnet_factory,
    devnet_templates,
)


pytestmark = pytest.mark.e2e

FAST = FrameworkSettings(round_timeout=15.0, reset_pause_duration=10)
FSM = Path(__file__).parents[1] / "packages/settleproof/skills/settleproof_chained_abci/fsm_specification.yaml"
#: The chained FSM's round ids, as the framework derives them from the class names.
ROUNDS = {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in yaml.safe_load(FSM.read_text())["states"]}
SETTLEPROOF = str(Path(sys.executable).with_name("settleproof"))


def get(url: str) -> Tuple[int, str, str]:
    """Status, content type and body, also of an error answer."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # nosec: loopback
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def wait_for_metric(url: str, name: str, timeout: float) -> str:
    """Scrape until the exposition has a sample `name` (the first period's RPC calls take a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        body = get(f"{url}/metrics")[2]
        if name in parse_metrics(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def test_agent_endpoints_and_status(devnet_factory: Callable[..., Devnet]) -> None:  # noqa: F811
    """Prometheus text with our metrics, a healthcheck naming an FSM round, 404 elsewhere, and the status table."""
    net = devnet_factory(1, OFFLINE_ENV, settings=FAST)
    net.wait_registered(timeout=120)
    url = net.metrics_url(0)

    body = wait_for_metric(url, "rpc_requests_total", timeout=90)
    samples = parse_metrics(body)
    assert "webhook_outbox_depth" in samples
    providers = {labels["provider"] for labels, _ in samples["rpc_requests_total"]}
    assert providers == {"127.0.0.1:9", "127.0.0.2:9"}
    assert {labels["outcome"] for labels, _ in samples["rpc_requests_total"]} != {"ok"}
    status_code, content_type, _ = get(f"{url}/metrics")
    assert status_code == 200 and content_type.startswith("text/plain")

    status_code, content_type, text = get(f"{url}/healthcheck")
    health: Dict = json.loads(text)
    assert status_code == 200 and content_type.startswith("application/json")
    assert health["current_round"] in ROUNDS and health["period"] >= 0
    assert set(health["rounds"]) <= ROUNDS and health["agent_address"] == net.addresses[0]
    assert health["seconds_since_last_transition"] >= 0 and health["is_tm_healthy"] is True

    assert get(f"{url}/admin")[0] == 404

    result = subprocess.run(  # nosec
        [SETTLEPROOF, "status", "--data-dir", str(net.data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header.split()[:4] == ["agent", "address", "round", "period"]
    cells = row.split()
    assert cells[0] == "agent0" and cells[1] == net.addresses[0] and cells[2] in ROUNDS
    assert "127.0.0.1:9=" in row and "127.0.0.2:9=" in row
