"""The REFERENCE POLLER of `benchmarks/comparative.py`: the no-consensus floor SettleProof is compared with.

Not the naive baseline of `make demo-chaos`: this one is correct for an honest
chain and provider, and as small as that allows. One process, one provider:
every `--interval` seconds it reads the head, and when a block reached the
confirmation depth (head - confirmations) it reads the token's Transfer logs up
to there with one `eth_getLogs`, matches each log one-to-one to an open invoice
(receiver, amount at least the invoice's, the smallest uuid first, as the agent
does), and POSTs the signed `invoice.paid` webhook once (the merchant is
healthy). Standard library plus `standardwebhooks` only, so its CPU and memory
are a floor. The secret comes from `SETTLEPROOF_WEBHOOK_SECRET`, never argv.
Prints `ready` on stdout once the provider answered; runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.request
from datetime import datetime, timezone
from typing import Any, Dict, List, Set

from standardwebhooks import Webhook

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


class ReferencePoller:
    """Cursor, settled invoices and the one provider; `poll_once` is one pass."""

    def __init__(self, args: argparse.Namespace, secret: str) -> None:
        """Start reading at `args.start_block`."""
        self.args = args
        self.webhook = Webhook(secret)
        self.cursor = args.start_block
        self.settled: Set[str] = set()
        self.posted = 0

    def rpc(self, method: str, params: List[Any]) -> Any:
        """One JSON-RPC call; an error reply raises."""
        call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        request = urllib.request.Request(self.args.rpc, data=call, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:  # nosec B310 (loopback)
            reply = json.loads(response.read())
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def poll_once(self) -> None:
        """Read the newly confirmed blocks, match, deliver."""
        safe = int(self.rpc("eth_blockNumber", []), 16) - self.args.confirmations
        if safe < self.cursor:
            return
        with urllib.request.urlopen(self.args.invoices_url, timeout=30) as response:  # nosec B310
            invoices = json.loads(response.read())
        logs = self.rpc("eth_getLogs", [{"fromBlock": hex(self.cursor), "toBlock": hex(safe),
                                         "address": self.args.token, "topics": [TRANSFER_TOPIC]}])
        open_by_receiver: Dict[str, List[Dict[str, Any]]] = {}
        for invoice in sorted(invoices, key=lambda inv: inv["uuid"]):
            if invoice["uuid"] not in self.settled and invoice["token"].lower() == self.args.token.lower():
                open_by_receiver.setdefault(invoice["receiver"].lower(), []).append(invoice)
        for log in sorted(logs, key=lambda raw: (int(raw["blockNumber"], 16), int(raw["logIndex"], 16))):
            candidates = open_by_receiver.get("0x" + log["topics"][2][-40:].lower(), [])
            value = int(log["data"], 16)
            for position, invoice in enumerate(candidates):
                if value >= int(invoice["amount"]):
                    del candidates[position]
                    self.deliver(invoice, log, value)
                    break
        self.cursor = safe + 1

    def deliver(self, invoice: Dict[str, Any], log: Dict[str, Any], value: int) -> None:
        """One signed POST with the agent's event id and body shape."""
        event_id = f"{invoice['uuid']}:{log['transactionHash']}"
        stamp = int(log.get("blockTimestamp", "0x0"), 16) or int(datetime.now(timezone.utc).timestamp())
        body = json.dumps({
            "type": "invoice.paid", "id": event_id,
            "timestamp": datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": {
                "invoice_uuid": invoice["uuid"], "tx_hash": log["transactionHash"],
                "log_index": int(log["logIndex"], 16), "block_number": int(log["blockNumber"], 16),
                "block_hash": log["blockHash"], "token": log["address"], "from": "0x" + log["topics"][1][-40:],
                "to": "0x" + log["topics"][2][-40:], "amount": str(value), "confirmations": self.args.confirmations,
            },
        }, separators=(",", ":"))
        now = datetime.now(timezone.utc)
        headers = {
            "Content-Type": "application/json", "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": self.webhook.sign(event_id, now, body),
        }
        request = urllib.request.Request(self.args.webhook_url, data=body.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30):  # nosec B310 (loopback)
                pass
        except OSError as error:  # one attempt: the merchant is healthy in this benchmark
            print(f"POST {event_id} failed: {error}", file=sys.stderr, flush=True)
        self.settled.add(invoice["uuid"])
        self.posted += 1


def main() -> None:
    """Poll until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--invoices-url", required=True)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--confirmations", type=int, default=3)
    parser.add_argument("--start-block", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between passes")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    poller = ReferencePoller(args, os.environ["SETTLEPROOF_WEBHOOK_SECRET"])
    poller.rpc("eth_blockNumber", [])
    print("ready", flush=True)
    while not stop.is_set():
        try:
            poller.poll_once()
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            print(f"poll failed: {error}", file=sys.stderr, flush=True)
        stop.wait(args.interval)  # the polling cadence


if __name__ == "__main__":
    main()
