"""What the benchmarks share: progress on stderr, the agents' and nodes' CPU and memory, waiting for webhooks.

Benchmarks print their JSON report on stdout, so progress goes to stderr.
CPU and memory are per process tree: an agent's `aea run` and its children;
a Tendermint node's control server and the `tendermint node` it runs (and
restarts at resets: the CPU of the nodes it reaped counts too).
"""

import argparse
import sys
import time
from typing import Any, Dict, List, Optional

import psutil

from settleproof.devnet.agents import FrameworkSettings
from settleproof.merchant import MerchantServer, MerchantTimeout


def say(message: str) -> None:
    """Progress on stderr; stdout is the JSON report."""
    print(message, file=sys.stderr, flush=True)


def add_service_args(parser: argparse.ArgumentParser, confirmations: int) -> None:
    """The service's shape, for the benchmarks that run it on the devnet."""
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--confirmations", type=int, default=confirmations)
    # 30 s, the framework's default: the comparative benchmark's first runs, at the demo's 20 s, found the
    # keeper sending one wave of webhooks per period (fixed since: each request waits what is left)
    parser.add_argument("--round-timeout", type=float, default=30.0, help="the agents' round timeout (s)")
    parser.add_argument("--reset-pause", type=int, default=10, help="the agents' pause between periods (s)")


def service_settings(args: argparse.Namespace) -> FrameworkSettings:
    """The framework settings `add_service_args` asked for."""
    return FrameworkSettings(round_timeout=args.round_timeout, reset_pause_duration=args.reset_pause)


def agent_pids(manifest: Dict[str, Any]) -> Dict[str, int]:
    """`agent<i>` -> the agent's PID, from a devnet manifest."""
    return {f"agent{a['index']}": a["pid"] for a in manifest["agents"]}


def node_pids(manifest: Dict[str, Any]) -> Dict[str, int]:
    """`node<i>` -> the PID of the node's control server (its tree holds the `tendermint node`)."""
    return {f"node{a['index']}": a["node"]["control_pid"] for a in manifest["agents"]}


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
