"""`make demo-chaos`: one scripted fault sequence, run through a naive baseline and through SettleProof.

Each run gets a fresh anvil (1 s blocks) set up by the same script, so both see
the same token, invoices (fixed uuids and receivers) and payments; three chaos
providers in front of it; and the merchant simulator, which here also accepts
unsigned requests (and counts them as unverifiable) so the baseline can be
scored. The script, in order:

A. provider 1 fabricates a payment of invoice 00 (never paid) in a block the
   scans will cover; 4 payments, one of which meets the terms of two invoices
B. provider 3 is down while 3 invoices are paid; then back
C. the merchant holds the first POST; the keeper (the baseline: its poller) is
   killed -9 while delivering it; 3 invoices paid
D. one agent restarted (the baseline: its poller); 2 invoices paid, a second
   payment of an invoice, a payment for no invoice
E. the merchant answers 503 while 3 invoices are paid and processed; then 2xx

The baseline polls provider 1 only; SettleProof (4 agents) asks all three with
a quorum of 2. Then one table, computed by `scorecard` from the merchant's
receipts against the contract's matching of the logs really on chain. Exit 0
when both runs completed and SettleProof shows no false settlement, lost event,
duplicate under a new id or unverifiable delivery.
"""

from __future__ import annotations

import hashlib
import signal
import sys
import tempfile
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import click
from web3 import Web3

from settleproof.agent_runner import AgentError
from settleproof.anvil import Anvil
from settleproof.chaos import ChaosServer
from settleproof.demo_chaos_runs import BaselineRun, SettleProofRun, Stack
from settleproof.erc20 import TRANSFER_TOPIC, deploy_token, transfer
from settleproof.merchant import Merchant, MerchantServer, new_secret
from settleproof.scorecard import Invoice, Score, Transfer, format_table, receipts_from_report, score
from settleproof.scorecard import true_settlements

INVOICES = 17
NAMESPACE = uuid.UUID("5e77e1e0-0000-4000-8000-00000000c4a0")
#: Batches of payments by phase: an invoice index, or ("again", index), or "stranger".
BATCHES: Dict[str, List[Union[int, str, Tuple[str, int]]]] = {
    "A": [1, 3, 4, 5],  # 1 and 2 have equal terms: one payment, one settlement
    "B": [6, 7, 8],
    "C": [9, 10, 11],
    "D": [12, 13, ("again", 3), "stranger"],
    "E": [14, 15, 16],
}
HOLD_SECONDS = 6.0
PHASE_TIMEOUT = 180.0
RUNS = ("baseline", "SettleProof")
Run = Union[BaselineRun, SettleProofRun]


def _address(seed: str) -> str:
    return Web3.to_checksum_address("0x" + hashlib.sha256(seed.encode()).hexdigest()[:40])


def build_invoices(token: str) -> List[Invoice]:
    """17 invoices, the same in both runs: 00 has the lowest receiver (what the fabricator pays), 01 = 02."""
    receivers = sorted((_address(f"demo-chaos receiver {i}") for i in range(INVOICES - 1)), key=str.lower)
    invoices = []
    for index in range(INVOICES):
        receiver = receivers[index if index < 2 else index - 1]
        amount = 2_000 if index in (1, 2) else 1_000 + index
        uid = str(uuid.uuid5(NAMESPACE, f"invoice {index:02d}"))
        invoices.append(Invoice(uid, token, receiver, amount))
    return invoices


def chain_logs(w3: Web3, token: str, first: int) -> List[Transfer]:
    """Every `Transfer` of the token from `first` on, read from anvil itself: the truth."""
    raw = w3.eth.get_logs({"fromBlock": first, "toBlock": "latest", "address": token, "topics": [TRANSFER_TOPIC]})
    return [
        Transfer(log["transactionHash"].to_0x_hex(), log["blockNumber"], log["logIndex"], log["address"],
                 "0x" + log["topics"][1].hex()[-40:], "0x" + log["topics"][2].hex()[-40:], int(log["data"].hex(), 16))
        for log in raw
    ]


@dataclass
class Script:  # pylint: disable=too-many-instance-attributes
    """One run of the fault sequence against `run`; `notes` keeps what did not go to plan."""

    stack: Stack
    run: Run
    invoices: List[Invoice]
    echo: Callable[[str], None]

    def __post_init__(self) -> None:
        """Nothing happened yet."""
        self.notes: List[str] = []

    def attempt(self, what: str, action: Callable[[], object]) -> None:
        """Do one awaited step; a timeout is noted (the table will show its cost), not fatal."""
        try:
            action()
        except (TimeoutError, AgentError) as error:
            self.notes.append(f"{what}: {str(error).splitlines()[0]}")
            self.echo(f"  ! {what} timed out")

    def pay(self, batch: str) -> Tuple[int, List[str]]:
        """Make the batch's payments; (last block, the event ids the truth then expects of them)."""
        s, blocks, hashes = self.stack, [], set()
        for item in BATCHES[batch]:
            if item == "stranger":
                receiver, amount, payer = _address("demo-chaos stranger"), 5_000, 1
            else:
                index = item[1] if isinstance(item, tuple) else item
                receiver, amount, payer = self.invoices[index].receiver, self.invoices[index].amount, 1 + index % 4
            paid = transfer(s.w3, s.token, s.w3.eth.accounts[payer], receiver, amount)
            blocks.append(paid.block_number)
            hashes.add(paid.tx_hash.lower())
        truth = true_settlements(self.invoices, chain_logs(s.w3, s.token, s.start_block))
        expected = [f"{uid}:{tx}" for uid, tx in truth.items() if tx in hashes]
        self.echo(f"  batch {batch}: {len(BATCHES[batch])} payments up to block {max(blocks)}")
        return max(blocks), expected

    def settle(self, batch: str, last: int, expected: List[str]) -> None:
        """Wait until the run has processed the batch (and, for SettleProof, delivered it)."""
        self.attempt(f"batch {batch} settled", lambda: self.run.settle(expected, last, PHASE_TIMEOUT))

    def play(self) -> None:
        """Phases A to E (see the module docstring)."""
        s, run = self.stack, self.run
        fabricator, flaky = s.providers[0], s.providers[2]
        fabricated_at = s.w3.eth.block_number + 2
        fabricator.set_fault("fabricate", at_block=fabricated_at, methods=["eth_getLogs"])
        self.echo(f"  provider 1 fabricates a payment of invoice 00 in block {fabricated_at}")
        run.start()
        self.echo("  started; A: payments, one fabricated")
        self.settle("A", *self.pay("A"))

        flaky.set_fault("down")
        self.echo("  B: provider 3 down")
        last, expected = self.pay("B")
        self.attempt("batch B read while provider 3 is down", lambda: run.processed_through(last, PHASE_TIMEOUT / 2))
        flaky.clear()
        self.settle("B", last, expected)

        self.echo("  C: the merchant holds the next POST; kill mid-delivery")
        before = len(s.merchant.arrivals)
        s.merchant.delay(HOLD_SECONDS, count=1)
        last, expected = self.pay("C")
        try:
            s.merchant.wait_for_arrivals(before + 1, timeout=PHASE_TIMEOUT)
            self.echo(f"  {run.kill_mid_delivery()}")
        except (TimeoutError, AgentError) as error:
            self.notes.append(f"kill mid-delivery: {str(error).splitlines()[0]}")
        self.settle("C", last, expected)
        self.attempt("the killed agent back", run.recover)

        self.echo(f"  D: {run.restart_one()}; payments, a second payment, a stranger's")
        self.settle("D", *self.pay("D"))
        self.attempt("the restarted agent back", run.recover)

        self.echo("  E: the merchant answers 503")
        s.merchant.fail(503)
        last, expected = self.pay("E")
        self.attempt("batch E attempted during the 503s", lambda: run.processed_through(last, PHASE_TIMEOUT))
        s.merchant.clear_faults()
        self.echo("  E: the merchant answers 2xx again")
        self.settle("E", last, expected)
        end = s.w3.eth.block_number
        self.attempt("the final block processed", lambda: run.processed_through(end, PHASE_TIMEOUT))

    def score(self) -> Score:
        """The column of this run."""
        truth = true_settlements(self.invoices, chain_logs(self.stack.w3, self.stack.token, self.stack.start_block))
        return score(receipts_from_report(self.stack.merchant.report()), truth)


def run_once(name: str, data_dir: Path, echo: Callable[[str], None]) -> Tuple[Score, List[str]]:
    """A fresh chain, providers and merchant; the script through the baseline or SettleProof."""
    echo(f"\n== run: {name} ==")
    with ExitStack() as stack:
        anvil = stack.enter_context(Anvil(block_time=1))
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
        token = deploy_token(w3)
        providers = [stack.enter_context(ChaosServer(anvil.url)) for _ in range(3)]
        secret = new_secret()
        merchant = stack.enter_context(MerchantServer(merchant=Merchant(secret, accept_unverified=True)))
        invoices = build_invoices(token)
        for inv in invoices:
            merchant.add_invoice(token=inv.token, receiver=inv.receiver, amount=inv.amount, uuid=inv.uuid)
        state = Stack(w3, token, providers, merchant, secret, w3.eth.block_number, stack)
        run: Run = BaselineRun(state) if name == "baseline" else SettleProofRun(state, data_dir, echo)
        stack.callback(run.stop)
        script = Script(state, run, invoices, echo)
        script.play()
        answered = Counter(a["status"] for a in merchant.report()["attempts"])
        echo(f"  the merchant answered {dict(sorted(answered.items()))} (HTTP status: requests)")
        return script.score(), script.notes


def main_run(data_dir: Path, names: Sequence[str] = RUNS, echo: Callable[[str], None] = click.echo) -> bool:
    """The runs and the table; whether SettleProof's column (if run) is clean."""
    columns: Dict[str, Score] = {}
    notes: Dict[str, List[str]] = {}
    for name in names:
        columns[name], notes[name] = run_once(name, data_dir / name, echo)
    echo("\n" + format_table(columns))
    for name, said in notes.items():
        for note in said:
            echo(f"note ({name}): {note}")
    after = columns.get("SettleProof", Score(0, 0, 0, 0, 0, 0))
    return (after.false_settlements, after.lost_events, after.duplicate_new_ids, after.unverifiable) == (0, 0, 0, 0)


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the devnet (default: a new temporary folder).")
@click.option("--only", type=click.Choice(RUNS), default=None, help="Run one side only (to debug it).")
def main(data_dir: Optional[Path], only: Optional[str]) -> None:
    """Run the before/after reliability demo."""
    folder = data_dir or Path(tempfile.mkdtemp(prefix="settleproof-demo-chaos-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so everything started is stopped
    try:
        clean = main_run(folder, (only,) if only else RUNS)
    except Exception as error:  # pylint: disable=broad-except
        click.echo(f"demo-chaos failed: {error}", err=True)
        sys.exit(1)
    click.echo("SettleProof: no false settlement, lost event, new-id duplicate or unverifiable delivery"
               if clean else "SettleProof's column is not clean", err=not clean)
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
