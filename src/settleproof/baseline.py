"""The naive BASELINE of `make demo-chaos`: how the original hackathon skill verified payments.

It exists only as the "before" column of the reliability demo: never deploy it,
and the agent's packages never import it. One thread, one RPC endpoint, no
consensus, and each weakness kept on purpose:

* one provider, believed blindly: a fabricated log settles an invoice;
* a fixed start block, read again on every start: a restart re-sends everything;
* a fresh random event id on every send: a re-send is a new event to the merchant;
* nested-loop matching: every log against every invoice, no one-to-one rule and
  no memory of settled invoices (one payment settles two equal invoices, a
  second payment settles an invoice again);
* one delivery attempt whatever the answer: a 503 loses the event;
* no signature: the merchant cannot tell it from a forgery.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

LOG = logging.getLogger("settleproof.baseline")
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def decode_log(raw: Dict[str, Any]) -> Dict[str, Any]:
    """A raw `Transfer` log as the fields matching and the webhook use (no validation: naive)."""
    return {
        "token": raw["address"],
        "from": "0x" + raw["topics"][1][-40:],
        "to": "0x" + raw["topics"][2][-40:],
        "value": int(raw["data"], 16),
        "tx_hash": raw["transactionHash"],
        "log_index": int(raw["logIndex"], 16),
        "block_number": int(raw["blockNumber"], 16),
        "block_hash": raw["blockHash"],
    }


def naive_matches(logs: Sequence[Dict[str, Any]], invoices: Sequence[Dict[str, Any]]) -> List[Tuple[Dict, Dict]]:
    """Every (invoice, log) pair whose terms match: the hackathon skill's double loop, nothing more."""
    matches = []
    for log in logs:
        for invoice in invoices:
            if (
                log["token"].lower() == invoice["token"].lower()
                and log["to"].lower() == invoice["receiver"].lower()
                and log["value"] >= int(invoice["amount"])
                and (not invoice.get("payer") or log["from"].lower() == invoice["payer"].lower())
            ):
                matches.append((invoice, log))
    return matches


def webhook_body(invoice: Dict[str, Any], log: Dict[str, Any]) -> Dict[str, Any]:
    """The event, shaped like ours but with a new random id every time it is built."""
    return {
        "type": "invoice.paid",
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "data": {
            "invoice_uuid": invoice["uuid"], "tx_hash": log["tx_hash"], "log_index": log["log_index"],
            "block_number": log["block_number"], "block_hash": log["block_hash"], "token": log["token"],
            "from": log["from"], "to": log["to"], "amount": str(log["value"]), "confirmations": 0,
        },
    }


class NaiveBaselinePoller:  # pylint: disable=too-many-instance-attributes
    """Polls `eth_getLogs` from `start_block` on and POSTs each match once; forgets everything when stopped."""

    def __init__(  # pylint: disable=too-many-arguments
        self, rpc_url: str, token: str, invoices_url: str, webhook_url: str, start_block: int,
        interval: float = 1.0, timeout: float = 10.0,
    ) -> None:
        """Nothing runs until `start()`; every new poller begins again at `start_block`."""
        self.rpc_url, self.token = rpc_url, token
        self.invoices_url, self.webhook_url = invoices_url, webhook_url
        self.cursor = start_block  # next block to read
        self.interval, self.timeout = interval, timeout
        self.sent: List[Tuple[str, int]] = []  # (event id, HTTP status or 0)
        self._killed = threading.Event()
        self._changed = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ one pass
    def poll_once(self) -> int:
        """Read up to the head, match, POST every match once; the number of POSTs."""
        head = int(self._rpc("eth_blockNumber", []), 16)
        if head < self.cursor:
            return 0
        invoices = self._get_json(self.invoices_url)
        receivers = sorted("0x" + "0" * 24 + inv["receiver"].lower()[2:] for inv in invoices)
        log_filter = {"fromBlock": hex(self.cursor), "toBlock": hex(head), "address": self.token,
                      "topics": [TRANSFER_TOPIC, None, receivers]}
        logs = [decode_log(raw) for raw in self._rpc("eth_getLogs", [log_filter])] if receivers else []
        posted = 0
        for invoice, log in naive_matches(logs, invoices):
            if self._killed.is_set():
                return posted  # killed mid-delivery: the rest of this pass is gone
            self._deliver(webhook_body(invoice, log))
            posted += 1
        with self._changed:
            self.cursor = head + 1
            self._changed.notify_all()
        return posted

    def _deliver(self, body: Dict[str, Any]) -> None:
        """One unsigned POST; whatever happens, the event is done with."""
        request = urllib.request.Request(
            self.webhook_url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # nosec B310 (loopback)
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError as error:
            LOG.info("baseline POST failed: %s", error)
            status = 0
        self.sent.append((body["id"], status))

    def _rpc(self, method: str, params: List[Any]) -> Any:
        call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        request = urllib.request.Request(self.rpc_url, data=json.dumps(call).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # nosec B310 (loopback)
            reply = json.loads(response.read())
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def _get_json(self, url: str) -> Any:
        with urllib.request.urlopen(url, timeout=self.timeout) as response:  # nosec B310 (loopback)
            return json.loads(response.read())

    # ------------------------------------------------------------------ life
    def run(self) -> None:
        """Poll every `interval` seconds until killed; errors are logged and the pass is tried again."""
        while not self._killed.is_set():
            try:
                self.poll_once()
            except (OSError, ValueError, RuntimeError, KeyError) as error:
                LOG.info("baseline poll failed: %s", error)
            self._killed.wait(self.interval)  # polling cadence

    def start(self) -> "NaiveBaselinePoller":
        """Poll on a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="naive-baseline", daemon=True)
        self._thread.start()
        return self

    def kill(self) -> None:
        """Stop at once: a POST in flight completes, nothing after it is sent, nothing is remembered."""
        self._killed.set()
        with self._changed:
            self._changed.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        """Kill and wait for the thread to end."""
        self.kill()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_past(self, block: int, timeout: float) -> None:
        """Block until a pass read `block` (and POSTed what it matched); TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.cursor > block or self._killed.is_set(), timeout):
                raise TimeoutError(f"the baseline did not read block {block} within {timeout:.0f} s")
        if self.cursor <= block:
            raise TimeoutError(f"the baseline was killed before it read block {block}")
