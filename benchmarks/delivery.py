"""Delivery benchmark (issue 5): many settlements in one period to a local merchant with 20 ms latency.

Sets up anvil with an ERC-20, three (honest) chaos proxies, the merchant
simulator answering each webhook after `--latency-ms`, `--settlements` open
invoices and one payment for each, all mined into one block kept just short of
the confirmation depth. Then it starts the local network with 4 real agents on 4 Tendermint validators, waits
until a period has gone through with every invoice observed, and mines the
confirmation depth in one step (t0). It reports the wall time from t0, and from
the start of the period that picked the payments up, to the last verified
webhook; each agent's CPU time (user+sys of the process tree, psutil) from t0
and from the first webhook to the last; each Tendermint node's CPU time from
t0 to the checkpoint; and every agent's and node's resident memory then.
The keeper is the agent that logged "delivering" with a due count; its CPU is
given per delivery, also minus the mean of the others over the same window (the
share delivery costs). A benchmark, not a test: it reports, it asserts nothing;
it exits 1 only when the run did not complete (the report's "error" says why).

    .venv/bin/python benchmarks/delivery.py --settlements 1000   # SETTLEPROOF_REGISTRY=... for another registry
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "src")]

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from settleproof.agent_logs import checkpoint_at_least, parse  # noqa: E402
from settleproof.agent_runner import AgentError  # noqa: E402
from settleproof.anvil import Anvil  # noqa: E402
from settleproof.chaos import ChaosServer  # noqa: E402
from settleproof.devnet.network import Devnet  # noqa: E402
from settleproof.erc20 import deploy_token  # noqa: E402
from settleproof.merchant import MerchantServer, MerchantTimeout, new_secret  # noqa: E402
from settleproof.service_env import settleproof_env  # noqa: E402
from support import (  # noqa: E402
    add_service_args, agent_pids, cpu_seconds, node_pids, rss_bytes, say, service_settings, wait_for_events,
)

TRANSFER_SELECTOR = "0xa9059cbb"
PROVIDERS = 3


def pay(node: Anvil, w3: Web3, token: str, merchant: MerchantServer, count: int) -> Dict[str, int]:
    """One invoice per payment, fresh receivers; every transfer mined into as few blocks as the gas limit allows."""
    senders = w3.eth.accounts[1:]
    first = node.block_number() + 1
    node.rpc("evm_setAutomine", [False])
    for index in range(count):
        receiver = Account.create().address
        amount = 1_000 + index
        merchant.add_invoice(token=token, receiver=receiver, amount=str(amount))
        data = TRANSFER_SELECTOR + receiver[2:].lower().rjust(64, "0") + f"{amount:064x}"
        node.rpc("eth_sendTransaction", [{"from": senders[index % len(senders)], "to": token, "data": data}])
    while int(node.rpc("txpool_status")["pending"], 16):
        node.rpc("anvil_mine", ["0x1"])
    node.rpc("evm_setAutomine", [True])
    last = node.block_number()
    logs = node.rpc("eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(last), "address": token}], timeout=60)
    if len(logs) != count:  # a setup failure, not a measurement
        raise RuntimeError(f"{len(logs)} Transfer logs in blocks {first}-{last}, expected {count}")
    return {"first_block": first, "last_block": last, "blocks": last - first + 1}


def parse_log(path: Path) -> List[Dict[str, Any]]:
    """The agent's log records, each with `at`: its time in unix seconds."""
    records = []
    for raw in path.read_text(errors="replace").splitlines():
        record = parse(raw)
        if record is not None and "time" in record:
            records.append({**record, "at": datetime.fromisoformat(record["time"]).timestamp()})
    return records


def wait_for_warm_period(devnet: Devnet, invoices: int, timeout: float) -> Optional[str]:
    """Until agent 0 ends a period (checkpoint) in which it observed all `invoices`; the error if not."""
    observed: List[int] = []

    def found(line: str) -> Optional[bool]:
        record = parse(line) or {}
        if record.get("message") == "observed" and record.get("invoices") == invoices:
            observed.append(record["period"])
        return True if record.get("message") == "checkpoint" and record.get("period") in observed else None

    try:
        devnet.agent(0).wait_for(found, timeout, f"a period with {invoices} invoices observed")
    except AgentError as error:
        return str(error).splitlines()[0]
    return None


def wait_for_checkpoint(devnet: Devnet, block: int, timeout: float) -> Optional[str]:
    """Until agent 0 logs a checkpoint at or past `block` (the delivery report was agreed); the error if not."""
    try:
        devnet.agent(0).wait_for(checkpoint_at_least(block), timeout, f"a checkpoint at or past block {block}")
    except AgentError as error:
        return str(error).splitlines()[0]
    return None


def analyse(devnet: Devnet, t0: float, settled_at: Optional[float]) -> Dict[str, Any]:
    """Keeper, periods and timings from the agents' logs (the manifest lists them)."""
    logs = {agent["index"]: parse_log(Path(agent["log"])) for agent in devnet.manifest()["agents"]}
    delivering = sorted(
        (line["at"], index, line["period"], line["due"])
        for index, lines in logs.items() for line in lines
        if line["message"] == "delivering" and line["at"] >= t0 and line.get("due", 0) > 0
    )
    result: Dict[str, Any] = {
        "delivering": [{"agent": i, "period": p, "due": d, "at_s": round(at - t0, 3)} for at, i, p, d in delivering],
        "budget_spent_warnings": sum(
            1 for lines in logs.values() for line in lines
            if line["message"] == "delivery budget spent" and line["at"] >= t0
        ),
        "round_timeouts_after_t0": dict(Counter(
            line["message"].split("'")[1] for lines in logs.values() for line in lines
            if line["at"] >= t0 and line["message"].endswith("round is done with event: Event.ROUND_TIMEOUT")
        )),
        "errors_after_t0": dict(Counter(
            line["message"][:240] for lines in logs.values() for line in lines
            if line["level"] == "ERROR" and line["at"] >= t0
        ).most_common(5)),
    }
    if not delivering:
        return result
    _, keeper, period, _ = delivering[0]
    starts = [line["at"] for lines in logs.values() for line in lines
              if line["message"] == "keeper selected" and line.get("period") == period]
    result["keeper"] = keeper
    result["pickup_period"] = period
    result["pickup_period_start_s"] = round(min(starts) - t0, 3) if starts else None
    result["observed"] = {
        index: {key: line.get(key) for key in ("from_block", "to_block", "payments", "invoices")}
        for index, lines in logs.items() for line in lines
        if line["message"] == "observed" and line.get("period") == period
    }
    if settled_at is not None and starts:
        result["seconds_from_period_start"] = round(settled_at - min(starts), 3)
    return result


def run(args: argparse.Namespace, data_dir: Path) -> Dict[str, Any]:
    """Set up, pay, start the agents, confirm at t0, wait for every webhook; the report."""
    report: Dict[str, Any] = {"args": vars(args), "data_dir": str(data_dir)}
    secret = new_secret()
    with ExitStack() as stack:
        # a high gas limit puts every payment into one block (a fresh-receiver transfer is ~51k gas)
        node = stack.enter_context(Anvil(accounts=10, extra_args=["--gas-limit", "1000000000"]))
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        token = deploy_token(w3)
        node.mine(args.confirmations)  # a safe head above zero from the start
        providers = [stack.enter_context(ChaosServer(node.url)).url for _ in range(PROVIDERS)]
        merchant = stack.enter_context(MerchantServer(secret=secret))
        merchant.delay(args.latency_ms / 1000)  # every POST /webhook, until cleared
        start_block = node.block_number()
        say(f"paying {args.settlements} invoices ...")
        report["chain"] = pay(node, w3, token, merchant, args.settlements)
        env = settleproof_env(providers, token, merchant, secret, args.confirmations, start_block)
        env["SETTLEPROOF_MAX_BLOCKS_PER_PERIOD"] = "2000"  # the whole chain: every payment in one range
        devnet = Devnet(args.agents, data_dir, env=env, settings=service_settings(args))
        say(f"starting the devnet with {args.agents} agents in {data_dir} ...")
        stack.enter_context(devnet)
        devnet.wait_registered(timeout=300)
        # one whole period with every invoice in the observations first: t0 then falls on a warm service
        error = wait_for_warm_period(devnet, args.settlements, timeout=args.timeout)
        if error is not None:
            report["error"] = f"no period completed before t0: {error}"
            return report
        manifest = devnet.manifest()
        pids = {agent["index"]: agent["pid"] for agent in manifest["agents"]}
        nodes = node_pids(manifest)
        before = {i: cpu_seconds(pid) for i, pid in pids.items()}
        nodes_before = {name: cpu_seconds(pid) for name, pid in nodes.items()}
        node.rpc("anvil_mine", [hex(args.confirmations)])
        t0 = time.time()
        say(f"payments at confirmation depth (block {node.block_number()}); waiting for the webhooks ...")
        at_first: Dict[int, float] = {}
        try:  # the keeper's first POST: from here on the CPU is mostly delivery
            merchant.wait_for_arrivals(1, timeout=args.timeout)
            at_first = {i: cpu_seconds(pid) for i, pid in pids.items()}
            report["error"] = wait_for_events(merchant, args.settlements, t0 + args.timeout - time.time())
        except MerchantTimeout:
            report["error"] = f"no webhook within {args.timeout:.0f} s"
        at_last = {i: cpu_seconds(pid) for i, pid in pids.items()}
        at_first = at_first or at_last
        events = merchant.events()
        complete = len(events) == args.settlements
        settled_at = max(e["received_at_unix"] for e in events) if complete and events else None
        if report["error"] is None:
            report["error"] = wait_for_checkpoint(devnet, report["chain"]["last_block"], timeout=120)
        at_checkpoint = {i: cpu_seconds(pid) for i, pid in pids.items()}
        nodes_cpu = {name: round(cpu_seconds(pid) - nodes_before[name], 3) for name, pid in nodes.items()}
        rss_mb = {name: round(rss_bytes(pid) / 2**20, 1)
                  for name, pid in {**agent_pids(manifest), **nodes}.items()}
        state = merchant.report()
        state_arrivals = list(merchant.arrivals)
        logs = analyse(devnet, t0, settled_at)
    keeper = logs.get("keeper")
    cpu = {
        str(i): {
            "t0_to_last_webhook": round(at_last[i] - before[i], 3),
            "first_to_last_webhook": round(at_last[i] - at_first[i], 3),
            "t0_to_checkpoint": round(at_checkpoint[i] - before[i], 3),
        }
        for i in pids
    }
    deliveries = len(events)

    def per_delivery(window: str) -> Optional[Dict[str, Any]]:
        """Keeper CPU per delivery over `window`, and beyond what a non-keeper spent meanwhile."""
        if keeper is None or not deliveries:
            return None
        mine = cpu[str(keeper)][window]
        others = [cpu[str(i)][window] for i in pids if i != keeper]
        mean = sum(others) / len(others) if others else 0.0
        return {
            "keeper_cpu_seconds": mine,
            "non_keeper_cpu_seconds_mean": round(mean, 3),
            "keeper_cpu_ms_per_delivery": round(1000 * mine / deliveries, 3),
            "keeper_extra_cpu_ms_per_delivery": round(1000 * (mine - mean) / deliveries, 3),
        }

    arrivals = [a["received_at_unix"] for a in state_arrivals]
    report.update({
        "settlements": args.settlements,
        "latency_ms": args.latency_ms,
        "seconds_from_confirmation": round(settled_at - t0, 3) if settled_at is not None else None,
        "seconds_from_period_start": logs.pop("seconds_from_period_start", None),
        "distinct_ids": deliveries,
        "duplicates": sum(state["duplicates"].values()),
        "webhook_requests": len(state["attempts"]),
        "rejected": state["rejected"],
        "conflicts": len(state["conflicts"]),
        "seconds_first_to_last_webhook": (
            round(settled_at - min(arrivals), 3) if settled_at is not None and arrivals else None
        ),
        "cpu_t0_to_last_webhook": per_delivery("t0_to_last_webhook"),
        "cpu_first_to_last_webhook": per_delivery("first_to_last_webhook"),
        "cpu_seconds_by_agent": cpu,
        "cpu_seconds_by_node_t0_to_checkpoint": nodes_cpu,
        "rss_mb_at_checkpoint": rss_mb,
        "logs": logs,
    })
    return report


def main() -> None:
    """Run once, print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settlements", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="merchant's delay before answering a webhook")
    add_service_args(parser, confirmations=12)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the webhooks")
    parser.add_argument("--data-dir", type=Path, default=None, help="devnet folder (default: a new temporary one)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop agents and anvil on the way out
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="settleproof-bench-delivery-"))
    args.data_dir = str(data_dir)
    report = run(args, data_dir)
    print(json.dumps(report, indent=2))
    if report["error"] is not None:  # the run did not complete (the report says why): `make bench` fails
        sys.exit(1)


if __name__ == "__main__":
    main()
