"""Reading a real agent's /metrics in tests: scrape, sum a series, wait until a condition holds."""

import time
import urllib.error
import urllib.request
from typing import Callable

from settleproof.status import Samples, parse_metrics


def scrape(metrics_url: str) -> Samples:
    """The agent's samples, read over HTTP as Prometheus would (`metrics_url` = Devnet.metrics_url(i))."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:  # nosec: loopback
        return parse_metrics(response.read().decode())


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a series' samples whose labels include `labels` (0 when absent)."""
    return sum(value for found, value in samples.get(name, []) if labels.items() <= found.items())


def wait_for_metrics(metrics_url: str, holds: Callable[[Samples], bool], timeout: float) -> Samples:
    """Scrape until `holds(samples)` (metrics are set when a round ends, just after its log lines)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = scrape(metrics_url)
        except (urllib.error.URLError, OSError):
            samples = {}
        if holds(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{metrics_url}/metrics never met the condition; last scrape: {sorted(samples)}")
        time.sleep(0.5)  # polling interval of an HTTP endpoint, not a stand-in for an event
