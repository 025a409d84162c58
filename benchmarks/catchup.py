"""Catch-up benchmark: how long the agent's quorum reader takes to scan a long history, and what it costs.

Builds an anvil chain (mining costs anvil a few ms per block: 100,000 blocks take
minutes) of `--blocks` blocks holding `--payments` ERC-20
payments to `--receivers` shops, puts three (honest) chaos proxies in front of
it to count requests and bytes per provider, then runs the very reader the
agent runs (sans I/O, driven with aiohttp as in the tests) period after period
from the first payment to the safe head: once with server-side filtering by
receiver (what the agent does), once without. A benchmark, not a test.

    .venv/bin/python benchmarks/catchup.py --blocks 100000 --payments 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from settleproof.anvil import Anvil  # noqa: E402
from settleproof.chaos import ChaosServer  # noqa: E402
from settleproof.erc20 import deploy_token  # noqa: E402
from tests.rpc_driver import Scanner  # noqa: E402

from packages.settleproof.skills.settlement_abci.rpc_exchange import ExchangeConfig  # noqa: E402

TRANSFER_SELECTOR = "0xa9059cbb"


def build_chain(node: Anvil, blocks: int, payments: int, receivers: int) -> Dict[str, Any]:
    """Deploy a token, then spread the payments evenly over `blocks` mined blocks (no waiting per tx)."""
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
    token = deploy_token(w3)
    shops = [Account.create().address for _ in range(receivers)]
    senders = w3.eth.accounts[1:]
    start = node.block_number() + 1
    node.rpc("evm_setAutomine", [False])
    per_round = min(len(senders), payments)  # sent together, mined into one block
    rounds = -(-payments // per_round)
    gap = max(1, blocks // rounds)
    sent = 0
    for _ in range(rounds):
        for _ in range(min(per_round, payments - sent)):
            shop = shops[sent % len(shops)]
            data = TRANSFER_SELECTOR + shop[2:].lower().rjust(64, "0") + f"{1000 + sent:064x}"
            node.rpc("eth_sendTransaction", [{"from": senders[sent % len(senders)], "to": token, "data": data}])
            sent += 1
        node.rpc("anvil_mine", [hex(gap)], timeout=600)
    remaining = start + blocks - node.block_number()
    if remaining > 0:
        node.rpc("anvil_mine", [hex(remaining)], timeout=600)
    node.rpc("evm_setAutomine", [True])
    return {"token": token, "shops": shops, "start": start, "head": node.block_number()}


def run(node: Anvil, chain: Dict[str, Any], receivers: Optional[List[str]], args: argparse.Namespace) -> Dict[str, Any]:
    """One catch-up from the first payment to the safe head through three fresh proxies."""
    with ChaosServer(node.url) as a, ChaosServer(node.url) as b, ChaosServer(node.url) as c:
        scanner = Scanner(
            urls=[a.url, b.url, c.url],
            tokens=[chain["token"]],
            receivers=receivers,
            confirmations=args.confirmations,
            max_blocks=args.max_blocks_per_period,
            max_log_range=args.max_log_range,
            config=ExchangeConfig(request_timeout=30.0, max_batch=args.max_batch),
            budget=600.0,
        )
        started = time.monotonic()
        found, checkpoint = asyncio.run(
            scanner.scan(chain["start"] - 1, chain["head"] - args.confirmations, max_periods=10**6)
        )
        seconds = time.monotonic() - started
        shops = {s.lower() for s in chain["shops"]}
        traffic = {p.url.split(":")[-1]: p.traffic() for p in (a, b, c)}
    return {
        "filter": "receivers" if receivers is not None else "none",
        "seconds": round(seconds, 2),
        "blocks": checkpoint - chain["start"] + 1,
        "payments_found": sum(1 for p in found if p.transfer.receiver in shops),
        "logs_accepted": len(found),
        "per_provider": {
            port: {
                "requests": sum(t["requests"].values()),
                "by_method": t["requests"],
                "bytes_sent_to_provider": t["bytes_in"],
                "bytes_received_from_provider": t["bytes_out"],
            }
            for port, t in traffic.items()
        },
    }


def main() -> None:
    """Build the chain once, run both variants, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100_000)
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--receivers", type=int, default=100, help="distinct shops (open invoices)")
    parser.add_argument("--max-log-range", type=int, default=1000)
    parser.add_argument("--max-blocks-per-period", type=int, default=2000)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--confirmations", type=int, default=12)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop anvil on the way out
    # --prune-history: anvil keeps fewer old states in memory and mines about a third faster
    with Anvil(accounts=10, extra_args=["--prune-history"]) as node:
        built = time.monotonic()
        chain = build_chain(node, args.blocks, args.payments, args.receivers)
        report: Dict[str, Any] = {"setup_seconds": round(time.monotonic() - built, 1), "args": vars(args), "runs": []}
        for receivers in (chain["shops"], None):
            report["runs"].append(run(node, chain, receivers, args))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
