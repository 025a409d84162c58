"""Durability benchmark: an agent's memory and store after many processed events, and recovery time.

For each history size (default 1,000 and 100,000 processed events, one per
block), every agent's store is filled the way the agents fill it (one commit
per period, every processed key kept on disk, the committed state holding only
the retention window), then the whole service is started on those stores, as
after a restart of all agents: anvil, three RPC endpoints, the merchant and a
devnet of 4 real agents. Reported per size: store file size, the committed
state's size (what travels in the recovery transaction), the time from starting
the agents to all of them resuming from the stored checkpoint, and each agent's
resident memory (RSS) after its first resumed period. A benchmark, not a test.

    .venv/bin/python benchmarks/durability.py --events 1000 100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "src")]

from web3 import Web3  # noqa: E402

from settleproof.agent_logs import event  # noqa: E402
from settleproof.anvil import Anvil  # noqa: E402
from settleproof.chaos import ChaosServer  # noqa: E402
from settleproof.devnet.agents import FrameworkSettings  # noqa: E402
from settleproof.devnet.network import Devnet  # noqa: E402
from settleproof.erc20 import deploy_token  # noqa: E402
from settleproof.merchant import MerchantServer, new_secret  # noqa: E402
from settleproof.service_env import settleproof_env  # noqa: E402
from support import node_pids, rss_bytes  # noqa: E402

from packages.settleproof.skills.settlement_abci.outbox import dumps_processed, retain  # noqa: E402
from packages.settleproof.skills.settlement_abci.recovery import CommittedState  # noqa: E402
from packages.settleproof.skills.settlement_abci.store import Store  # noqa: E402

AGENTS = 4
RETENTION = 2000  # the skill's default processed_retention_blocks
EVENTS_PER_COMMIT = 1000


def fill_store(folder: Path, events: int) -> Dict[str, Any]:
    """One agent's store after `events` processed events, one per block, committed 1,000 at a time."""
    store = Store.open(folder)
    processed: Dict[str, int] = {}
    state = CommittedState()
    started = time.monotonic()
    for first in range(1, events + 1, EVENTS_PER_COMMIT):
        last = min(events, first + EVENTS_PER_COMMIT - 1)
        processed.update({f"{n:08d}-0000-4000-8000-000000000000:0x{n:064x}": n for n in range(first, last + 1)})
        processed = retain(processed, last, RETENTION, set())
        state = CommittedState(state.seq + 1, last, "", {
            "outbox": "[]", "dead_letters": "[]", "processed_keys": dumps_processed(processed),
        })
        store.commit(state, period=state.seq)
    seconds = time.monotonic() - started
    count = store.processed_count()
    store.close()
    return {"commits": state.seq, "checkpoint": state.checkpoint, "keys_in_store": count,
            "keys_in_state": len(processed), "state_bytes": len(state.to_json()),
            "fill_seconds": round(seconds, 1), "store_bytes": (folder / "settleproof.sqlite3").stat().st_size}


def measure(events: int, workdir: Path) -> Dict[str, Any]:
    """Fill the stores, start the service on them, time the recovery and read the agents' memory."""
    secret = new_secret()
    with ExitStack() as stack:
        anvil = stack.enter_context(Anvil())
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
        token = deploy_token(w3)
        providers = [stack.enter_context(ChaosServer(anvil.url)).url for _ in range(3)]
        merchant = stack.enter_context(MerchantServer(secret=secret))
        env = settleproof_env(providers, token, merchant, secret, 3, w3.eth.block_number)
        devnet = Devnet(AGENTS, workdir, env=env, settings=FrameworkSettings(round_timeout=20.0))
        devnet.prepare()
        first = devnet.slots[0].data_dir
        store = fill_store(first, events)
        for slot in devnet.slots[1:]:  # every agent stored the same commits
            shutil.copytree(first, slot.data_dir, dirs_exist_ok=True)
        started = time.monotonic()
        stack.enter_context(devnet)
        resumed = []
        for index in range(AGENTS):
            selected = devnet.agent(index).wait_for(event("keeper selected"), 300, "the first period after recovery")
            resumed.append({"checkpoint": selected["checkpoint"], "commit_seq": selected["commit_seq"],
                            "seconds": round(time.monotonic() - started, 1)})
        for index in range(AGENTS):  # memory once a resumed period has been committed
            devnet.agent(index).wait_for(event("checkpoint", commit_seq=store["commits"] + 1), 120, "a resumed commit")
        rss = [round(rss_bytes(devnet.agent(index).pid) / 2**20, 1) for index in range(AGENTS)]
        node_rss = [round(rss_bytes(pid) / 2**20, 1) for pid in node_pids(devnet.manifest()).values()]
    return {"events": events, "store": store, "recovered": resumed,
            "recovery_seconds": max(r["seconds"] for r in resumed), "agent_rss_mb": rss, "node_rss_mb": node_rss}


def main() -> None:
    """Run each size, print one JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000, 100_000])
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop every process on the way out
    runs: List[Dict[str, Any]] = []
    for events in args.events:
        workdir = Path(tempfile.mkdtemp(prefix=f"settleproof-durability-{events}-"))
        try:
            runs.append(measure(events, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"agents": AGENTS, "retention_blocks": RETENTION, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
