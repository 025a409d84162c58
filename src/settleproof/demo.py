"""`make demo`: the whole service on one machine, paid invoices confirmed end to end.

anvil (1 s blocks) with an ERC-20, three RPC endpoints in front of it, the
merchant simulator, and 4 real agents on 4 Tendermint validators. The demo creates 20
invoices, pays them (plus one payment that matches no invoice and a second
payment of one invoice), waits for the verified webhooks, and prints a table of
latencies from the payment's block reaching the confirmation depth to the
merchant's verified receipt. Exit 0 only when every paid invoice was confirmed
by exactly one event id and nothing else was reported.
"""

import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import click
from eth_account import Account
from web3 import Web3

from settleproof.agent_logs import checkpoint_at_least
from settleproof.anvil import Anvil
from settleproof.chaos import ChaosServer
from settleproof.devnet.agents import FrameworkSettings
from settleproof.devnet.network import Devnet
from settleproof.erc20 import TransferResult, deploy_token, transfer
from settleproof.merchant import MerchantServer, MerchantTimeout, new_secret
from settleproof.service_env import settleproof_env


INVOICES = 20
AGENTS = 4
PROVIDERS = 3
CONFIRMATIONS = 3


class DemoFailed(RuntimeError):
    """The demo saw something other than exactly one verified event per paid invoice."""


@dataclass
class Payment:
    """One invoice and the transfer that paid it."""

    invoice_uuid: str
    paid: TransferResult


def percentile(values: List[float], fraction: float) -> float:
    """Nearest-rank percentile: simple and exact for small samples."""
    ordered = sorted(values)
    rank = max(1, int(round(fraction * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def confirmation_time(w3: Web3, block: int) -> Optional[float]:
    """When the block `CONFIRMATIONS` deeper was mined (unix seconds), if it exists yet."""
    target = block + CONFIRMATIONS
    if w3.eth.block_number < target:
        return None
    return float(w3.eth.get_block(target)["timestamp"])


def pay_invoices(w3: Web3, token: str, merchant: MerchantServer) -> List[Payment]:
    """20 invoices to fresh receivers, each paid by a funded dev account; plus two distractions."""
    payers = w3.eth.accounts[1:5]
    payments = []
    for index in range(INVOICES):
        receiver = Account.create().address
        amount = 1_000 + index
        invoice = merchant.add_invoice(token=token, receiver=receiver, amount=str(amount))
        paid = transfer(w3, token, payers[index % len(payers)], receiver, amount)
        payments.append(Payment(invoice["uuid"], paid))
        click.echo(f"  paid invoice {index + 1:2d}/{INVOICES} in block {paid.block_number}")
    transfer(w3, token, payers[0], Account.create().address, 5_000)  # matches no invoice
    transfer(w3, token, payers[1], payments[0].paid.to, 1_000)  # invoice 1 paid twice
    return payments


def wait_for_confirmations(merchant: MerchantServer, expected: int, timeout: float) -> None:
    """Show progress until `expected` verified events arrived."""
    deadline = time.monotonic() + timeout
    received = 0
    while received < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DemoFailed(f"only {received} of {expected} invoices confirmed in {timeout:.0f} s")
        try:
            merchant.wait_for_events(received + 1, timeout=min(remaining, 30))
        except MerchantTimeout:
            continue
        received = len(merchant.events())
        click.echo(f"  confirmed {received}/{expected}")


def report(w3: Web3, merchant: MerchantServer, payments: List[Payment]) -> None:
    """Print the latency table; raise DemoFailed unless exactly the paid invoices were confirmed."""
    events = {event["id"]: event for event in merchant.events()}
    expected = {f"{p.invoice_uuid}:{p.paid.tx_hash}": p for p in payments}
    latencies = []
    click.echo(f"\n{'invoice':36}  {'tx':12}  {'block':>6}  {'seconds':>7}")
    for event_id, payment in expected.items():
        event = events.get(event_id)
        confirmed_at = confirmation_time(w3, payment.paid.block_number)
        latency = None
        if event is not None and confirmed_at is not None:
            latency = event["received_at_unix"] - confirmed_at
            latencies.append(latency)
        shown = "missing" if latency is None else f"{latency:7.1f}"
        click.echo(
            f"{payment.invoice_uuid:36}  {payment.paid.tx_hash[:12]}  "
            f"{payment.paid.block_number:>6}  {shown:>7}"
        )
    if latencies:
        click.echo(
            f"\np50 {percentile(latencies, 0.5):.1f} s, p95 {percentile(latencies, 0.95):.1f} s "
            f"(block at confirmation depth -> verified webhook)"
        )
    state = merchant.report()
    problems = []
    if set(events) != set(expected):
        problems.append(
            f"missing {sorted(set(expected) - set(events))}, unexpected {sorted(set(events) - set(expected))}"
        )
    if state["rejected"]:
        problems.append(f"{state['rejected']} requests failed verification")
    if state["conflicts"]:
        problems.append(f"second payment events for paid invoices: {state['conflicts']}")
    if problems:
        raise DemoFailed("; ".join(problems))


def wait_for_checkpoint_past(devnet: Devnet, block: int, timeout: float) -> None:
    """Wait until an agent committed a checkpoint past `block`: nothing later can still arrive."""

    devnet.agent(0).wait_for(checkpoint_at_least(block), timeout, f"a checkpoint past block {block}")


def run(data_dir: Path, timeout: float) -> None:
    """The demo; raises DemoFailed (or an AgentError) on anything unexpected."""
    secret = new_secret()
    with ExitStack() as stack:
        anvil = stack.enter_context(Anvil(block_time=1))
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
        token = deploy_token(w3)
        providers = [stack.enter_context(ChaosServer(anvil.url)).url for _ in range(PROVIDERS)]
        merchant = stack.enter_context(MerchantServer(secret=secret))
        env = settleproof_env(providers, token, merchant, secret, CONFIRMATIONS, w3.eth.block_number)
        click.echo(f"anvil {anvil.url}, token {token}, providers {', '.join(providers)}")
        devnet = Devnet(AGENTS, data_dir, env=env, settings=FrameworkSettings(round_timeout=20.0))
        click.echo(f"starting {AGENTS} agents on {AGENTS} Tendermint validators in {data_dir} ...")
        stack.enter_context(devnet)
        height = devnet.wait_registered(timeout=240)
        click.echo(f"all {AGENTS} agents registered (chain height {height}); paying invoices")
        payments = pay_invoices(w3, token, merchant)
        wait_for_confirmations(merchant, len(payments), timeout)
        last_block = w3.eth.block_number
        wait_for_checkpoint_past(devnet, last_block, timeout=120)
        report(w3, merchant, payments)
    click.echo("demo passed: every paid invoice confirmed by exactly one verified event")


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Devnet folder (default: a new temporary folder).")
@click.option("--timeout", type=float, default=300.0, help="Seconds to wait for confirmations.")
def main(data_dir: Optional[Path], timeout: float) -> None:
    """Run the local multi-agent demo on the embedded defaults."""
    folder = data_dir or Path(tempfile.mkdtemp(prefix="settleproof-demo-"))
    # SIGTERM unwinds like Ctrl-C, so every process the demo started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(folder, timeout)
    except Exception as error:  # pylint: disable=broad-except
        click.echo(f"demo failed: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
