"""What the benchmarks share: progress on stderr, the agents' CPU and memory, waiting for webhooks.

Benchmarks print their JSON report on stdout, so progress goes to stderr.
CPU and memory are per process tree (an agent's `aea run` and its children).
"""

import sys
import time
from typing import List, Optional

import psutil

from settleproof.merchant import MerchantServer, MerchantTimeout


def say(message: str) -> None:
    """Progress on stderr; stdout is the JSON report."""
    print(message, file=sys.stderr, flush=True)


def tree(pid: int) -> List[psutil.Process]:
    """The process and its live descendants."""
    root = psutil.Process(pid)
    return [root] + root.children(recursive=True)


def cpu_seconds(pid: int) -> float:
    """User+sys seconds of the tree (and of the children the root reaped)."""
    total = 0.0
    for index, process in enumerate(tree(pid)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # exited meanwhile
            continue
        total += times.user + times.system + (times.children_user + times.children_system if index == 0 else 0)
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of the tree now."""
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def wait_for_events(merchant: MerchantServer, expected: int, timeout: float, step: int = 100) -> Optional[str]:
    """Block until `expected` verified events arrived (progress every `step`); the error text if not."""
    deadline = time.monotonic() + timeout
    while len(merchant.events()) < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"only {len(merchant.events())} of {expected} events within {timeout:.0f} s"
        try:
            merchant.wait_for_events(min(expected, len(merchant.events()) // step * step + step), min(remaining, 60))
        except MerchantTimeout:
            continue
        say(f"  {len(merchant.events())}/{expected} verified webhooks")
    return None
