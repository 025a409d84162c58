"""Idle benchmark: what the local network costs while nothing is paid, per agent and per Tendermint node.

Starts `--agents` real agents on as many Tendermint validators (block interval
`--block-interval`), with providers and merchant URLs that answer nothing (the
agents run their periods and find nothing to do), waits for a first completed
period, then samples every process tree's CPU time and resident memory for
`--seconds`. Reports CPU seconds per second (1.0 is one core) and peak RSS,
per agent and per node, and the blocks made meanwhile. A benchmark, not a
test: it asserts nothing.

    .venv/bin/python benchmarks/idle.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "src")]

from settleproof.agent_logs import event  # noqa: E402
from settleproof.devnet.network import Devnet  # noqa: E402
from support import agent_pids, cpu_seconds, node_pids, rss_bytes, say, service_settings  # noqa: E402

#: Valid settings whose endpoints answer nothing (port 9, discard): every period finds nothing to do.
NOTHING = "http://127.0.0.1:9"
IDLE_ENV = {
    "SETTLEPROOF_RPC_ENDPOINTS": f"{NOTHING},http://127.0.0.2:9",  # two addresses: two providers
    "SETTLEPROOF_TOKEN_ADDRESS": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "SETTLEPROOF_INVOICES_URL": f"{NOTHING}/invoices",
    "SETTLEPROOF_WEBHOOK_URL": f"{NOTHING}/webhook",
    "SETTLEPROOF_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def main() -> None:
    """Run once, print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--block-interval", type=float, default=0.5)
    parser.add_argument("--round-timeout", type=float, default=30.0)
    parser.add_argument("--reset-pause", type=int, default=10)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="settleproof-bench-idle-"))
    with Devnet(args.agents, data_dir, env=IDLE_ENV, block_interval=args.block_interval,
                settings=service_settings(args)) as devnet:
        devnet.wait_registered(timeout=300)
        devnet.agent(0).wait_for(event("checkpoint"), 300, "a first period")
        pids: Dict[str, int] = {**agent_pids(devnet.manifest()), **node_pids(devnet.manifest())}
        say(f"sampling {len(pids)} process trees for {args.seconds:.0f} s ...")
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        height0, started = devnet.height(), time.monotonic()
        peak = {name: 0 for name in pids}
        while time.monotonic() - started < args.seconds:
            for name, pid in pids.items():
                peak[name] = max(peak[name], rss_bytes(pid))
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        cpu = {name: round((cpu_seconds(pid) - cpu0[name]) / elapsed, 3) for name, pid in pids.items()}
        blocks = devnet.height() - height0
    print(json.dumps({
        "agents": args.agents, "block_interval_s": args.block_interval, "seconds": round(elapsed, 1),
        "blocks": blocks, "cpu_cores": cpu, "cpu_cores_all": round(sum(cpu.values()), 3),
        "peak_rss_mb": {name: round(value / 2**20, 1) for name, value in peak.items()},
        "data_dir": str(data_dir),
    }, indent=2))


if __name__ == "__main__":
    main()
