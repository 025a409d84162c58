"""End to end: the committed state survives restarts, damaged stores and reorgs (issue 6).

Two real runs:

* the local network with four agents on four Tendermint validators, restarted
  as a whole twice (kill -9 on every agent and every node, then started again
  on the same data dir), once between
  payments and once during a Checkpoint round, plus one agent restarted
  mid-period and, at the end, one agent started again on a damaged store;
* one agent (abci mock) on an anvil that only mines on demand, so reorgs
  shallower and deeper than the confirmation depth happen at chosen blocks.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from eth_account import Account
from web3 import Web3

from settleproof import agent_runner
from settleproof.agent_logs import checkpoint_at_least, event, events
from settleproof.anvil import Anvil
from settleproof.devnet.agents import FrameworkSettings
from settleproof.devnet.network import Devnet
from settleproof.erc20 import token_contract, transfer
from settleproof.merchant import MerchantServer
from settleproof.service_env import settleproof_env
from settleproof.status import parse_metrics
from tests.devnet_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    devnet_factory,
    devnet_templates,
)
from tests.test_e2e_rpc_outage import count_at_least
from tests.test_e2e_single_agent import agent_env, stack  # noqa: F401  # pylint: disable=unused-import
from tests.test_observability import get


pytestmark = pytest.mark.e2e
PARAMS = agent_runner.SKILL_PARAMS
STORE_FILE = "settleproof.sqlite3"
FAST = FrameworkSettings(round_timeout=15.0, reset_pause_duration=10)
TIMEOUT = 180.0
HALTED = "halted: the chain no longer holds the checkpoint block; not advancing"


# ---------------------------------------------------------------------- helpers


def after(first: Callable[[str], object], then: str) -> Callable[[str], Optional[bool]]:
    """A line matcher firing on the first line matching `then` that follows a line `first` accepts."""
    then_re, seen = re.compile(then), []

    def found(line: str) -> Optional[bool]:
        if seen and then_re.search(line):
            return True
        if first(line):
            seen.append(line)
        return None

    return found


def next_line(agent: agent_runner.AgentProcess, pattern: str) -> Callable[[str], Optional[bool]]:
    """A line matcher for the next line matching `pattern`, ignoring what the agent printed so far."""
    regex, skip, seen = re.compile(pattern), len(agent.lines), [0]

    def found(line: str) -> Optional[bool]:
        seen[0] += 1
        return True if seen[0] > skip and regex.search(line) else None

    return found


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples on an agent's /metrics (0 when absent)."""
    return sum(value for _, value in parse_metrics(get(f"{url}/metrics")[2]).get(name, []))


def wait_metric(url: str, name: str, done: Callable[[float], bool], timeout: float) -> float:
    """Scrape until the metric satisfies `done` (it moves when a round's clean-up runs)."""
    deadline = time.monotonic() + timeout
    while True:
        value = metric(url, name)
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def store_path(net: Devnet, index: int) -> Path:
    """Agent `index`'s SQLite store."""
    return net.slots[index].data_dir / STORE_FILE


def stored_seq(path: Path) -> int:
    """The commit number a store holds, read without migrating anything."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT seq FROM checkpoint").fetchone()[0])


def backup_store(path: Path, target: Path) -> None:
    """A consistent copy of a live WAL store (SQLite's online backup)."""
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode = DELETE")  # everything in the one file we copy back later
    finally:
        copy.close()
        source.close()


def restore_store(copy: Path, path: Path) -> None:
    """Put an older store in place of the current one (its WAL and index files go too)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, path)


def wait_resting(net: Devnet, indices: List[int], block: int) -> None:
    """Every agent committed a checkpoint at or beyond `block` and is pausing: its store is written
    (the Checkpoint behaviour's clean-up runs before the next behaviour starts) and no write is under way."""
    for index in indices:
        agent = net.agent(index)
        agent.wait_for(
            after(checkpoint_at_least(block), r"Entered in the 'reset_and_pause_behaviour' behaviour"),
            TIMEOUT, f"agent {index} pausing after a checkpoint >= {block}",
        )


def kill_all(net: Devnet) -> None:
    """kill -9 every agent and every Tendermint node, then stop what is left: a host reboot.

    The devnet starts a fresh testnet on the same data dir; the agents resume from their stores.
    """
    for index in range(len(net.slots)):
        net.kill_agent(index)
        net.kill_node(index)
    net.stop()


Report = Tuple[int, Optional[int]]


def recovery(net: Devnet, indices: List[int]) -> Tuple[List[Report], List[Tuple[Optional[int], int]]]:
    """Each agent's reported (seq, checkpoint) and the (checkpoint, commit_seq) its first period started from."""
    reports, resumed = [], []
    for index in indices:
        agent = net.agent(index)
        report = agent.wait_for(event("reporting committed state"), TIMEOUT, f"agent {index} report")
        reports.append((report["seq"], report["checkpoint"]))
        selected = agent.wait_for(event("keeper selected"), TIMEOUT, f"agent {index} keeper")
        resumed.append((selected["checkpoint"], selected["commit_seq"]))
    return reports, resumed


def expected_resume(reports: List[Report], threshold: int, participants: int) -> Tuple[int, int]:
    """The contract of recovery on every agent's logged report: the newest state at least n - t + 1
    agents vouch for (by reporting it or its successor: these stores hold one chain of commits), its
    checkpoint lowered to the threshold-th highest checkpoint reported."""
    vouchers = participants - threshold + 1
    seqs = [r[0] for r in reports]
    vouched = [r for r in reports if r[0] > 0 and seqs.count(r[0]) + seqs.count(r[0] + 1) >= vouchers]
    assert vouched, f"no state vouched for in {reports}"
    seq, checkpoint = max(vouched)
    held = sorted((c for _, c in reports if c is not None), reverse=True)
    assert checkpoint is not None
    return seq, min(checkpoint, held[threshold - 1])


# ---------------------------------------------------------------------- devnet: restarts


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_restarts_resume_from_the_committed_state(  # pylint: disable=too-many-locals,too-many-statements
    devnet_factory: Callable[..., Devnet],  # noqa: F811
    w3: Web3, token: str, merchant: MerchantServer, webhook_secret: str, anvil: Anvil, tmp_path: Path,
    rpc_providers: Callable[..., List[str]],
) -> None:
    """Every paid invoice is settled under one id (never a new id, nothing for an underpaid invoice)
    across: one agent restarted mid-period; all agents killed between payments with two of them on an
    older store (the checkpoint is lowered, the re-scanned payment is dropped as a duplicate); all agents
    killed during a Checkpoint round; agent 3 started on a damaged store (it refuses to start, naming
    the file; the other three go on)."""
    merchant.list_paid_as_open = True  # a slow merchant: re-scanned payments still meet their invoice
    shops = [Account.create().address for _ in range(6)]
    invoices = [merchant.add_invoice(token=token, receiver=shop, amount="1000") for shop in shops]
    payer = w3.eth.accounts[1]
    providers = rpc_providers(anvil.url, 2)
    env = settleproof_env(providers, token, merchant, webhook_secret, 2, w3.eth.block_number)
    net = devnet_factory(4, env, settings=FAST)
    expected = set()

    def pay(number: int, amount: int = 1000) -> int:
        paid = transfer(w3, token, payer, shops[number], amount)
        if amount >= 1000:
            expected.add(f"{invoices[number]['uuid']}:{paid.tx_hash}")
        return paid.block_number

    # Invoice 0 settles; then older copies of agents 0 and 1's stores are kept.
    block = pay(0)
    net.wait_registered(timeout=TIMEOUT)
    merchant.wait_for_events(1, timeout=TIMEOUT)
    wait_resting(net, [0, 1, 2, 3], block)
    older = {index: tmp_path / f"agent{index}-older.sqlite3" for index in (0, 1)}
    for index, copy in older.items():
        backup_store(store_path(net, index), copy)
    older_seq = stored_seq(older[0])

    # Invoice 1 is paid while agent 1 is killed mid-period and started again.
    block = pay(1)
    net.agent(1).wait_for(next_line(net.agent(1), r"Entered in the 'fetch_logs_quorum_round'"), TIMEOUT, "a period")
    net.kill_agent(1)
    net.start_agent(1)
    merchant.wait_for_events(2, timeout=TIMEOUT)
    net.agent(1).wait_for(checkpoint_at_least(block), TIMEOUT, "the restarted agent 1 committing again")
    wait_resting(net, [0, 1, 2, 3], block)

    # Restart 1, between payments: every agent killed, chain restarted; agents 0 and 1 hold older stores.
    kill_all(net)
    for index, copy in older.items():
        restore_store(copy, store_path(net, index))
    net.start()
    net.wait_registered(timeout=TIMEOUT)
    reports, resumed = recovery(net, [0, 1, 2, 3])
    seq, checkpoint = expected_resume(reports, threshold=3, participants=4)
    assert {r[0] for r in reports[:2]} == {older_seq} and min(r[0] for r in reports[2:]) > older_seq
    assert checkpoint < max(c for _, c in reports if c is not None)  # lowered: blocks are re-scanned
    assert set(resumed) == {(checkpoint, seq)}, (reports, resumed)
    url = net.metrics_url(2)
    assert wait_metric(url, "duplicate_events_dropped_total", lambda v: v > 0, TIMEOUT) > 0
    pay(3, amount=999)  # underpaid: never settles invoice 3
    block = pay(2)
    merchant.wait_for_events(3, timeout=TIMEOUT)

    # Restart 2, during the Checkpoint round of the period that settled invoice 4.
    pay(4)
    net.agent(0).wait_for(
        after(event("invoice settled", invoice_uuid=invoices[4]["uuid"]),
              r"Entered in the 'checkpoint_round'"),
        TIMEOUT, "the Checkpoint round settling invoice 4",
    )
    kill_all(net)
    net.start()
    net.wait_registered(timeout=TIMEOUT)
    reports, resumed = recovery(net, [0, 1, 2, 3])
    seq, checkpoint = expected_resume(reports, threshold=3, participants=4)
    assert set(resumed) == {(checkpoint, seq)}, (reports, resumed)
    merchant.wait_for_events(len(expected), timeout=TIMEOUT)

    # Agent 3's store is damaged while it is down: it refuses to start, naming the file; the others go on.
    # (Only one agent restarts here: after a chain restart, registration waits for every agent.)
    net.kill_agent(3)
    damaged = store_path(net, 3)
    damaged.write_bytes(b"not a database, " * 64)
    net.start_agent(3)
    block = pay(5)
    exit_code = net.agent(3).wait(timeout=TIMEOUT)
    said = [line for line in net.agent(3).lines if line.strip()]
    assert exit_code != 0 and said, said
    assert said[-1].startswith(f"refusing to start: {damaged}: ") and "move it aside" in said[-1], said[-3:]
    merchant.wait_for_events(len(expected), timeout=TIMEOUT)
    wait_resting(net, [0, 1, 2], block)

    report = merchant.report()
    assert {event["id"] for event in report["events"]} == expected
    assert report["conflicts"] == [] and report["rejected"] == 0
    assert invoices[3]["uuid"] not in {event["invoice_uuid"] for event in report["events"]}
    assert stored_seq(store_path(net, 0)) > seq  # agent 0, once on an older store, commits past the resumed state


# ---------------------------------------------------------------------- one agent: reorgs


@pytest.fixture
def chain() -> Iterator[Anvil]:
    """anvil mining only on transactions and `anvil_mine`, so the test decides where each block lands."""
    with Anvil() as node:
        yield node


Payment = Tuple[str, str, int]


def reorg(node: Anvil, w3: Web3, token: str, depth: int, payments: Dict[int, Payment]) -> Dict[int, str]:
    """Replace the last `depth` blocks (`anvil_reorg`) with blocks holding `payments` (offset -> payer,
    receiver, amount); the new transactions' hashes by offset."""
    head = node.block_number()
    contract = token_contract(w3, token)
    txs = [
        [{"from": sender, "to": token, "gas": hex(200_000),
          "data": contract.functions.transfer(receiver, amount)._encode_transaction_data()}, offset]
        for offset, (sender, receiver, amount) in payments.items()
    ]
    node.rpc("anvil_reorg", [depth, txs])
    assert node.block_number() == head
    hashes = {}
    for offset in payments:
        (tx,) = w3.eth.get_block(head - depth + 1 + offset).transactions
        hashes[offset] = "0x" + tx.hex().removeprefix("0x")
        assert w3.eth.get_transaction_receipt(tx)["status"] == 1
    return hashes


def test_reorgs_shallow_is_absorbed_deep_halts(chain: Anvil, stack: Dict, tmp_path: Path) -> None:  # noqa: F811
    """A reorg within the confirmation depth: the orphaned payment is never reported, its replacement is.
    A deeper one, past the checkpoint: the agent halts (log naming the block, metrics) and reports nothing
    more, neither the orphaned payment again nor a payment only the new chain holds."""
    confirmations = 3
    w3: Web3 = stack["w3"]
    token: str = stack["token"]
    merchant: MerchantServer = stack["merchant"]
    merchant.list_paid_as_open = False  # it closes an invoice once paid: a 2xx is never sent again
    payer, other = w3.eth.accounts[1], w3.eth.accounts[2]
    shop_a, shop_b, shop_c = (Account.create().address for _ in range(3))
    invoice_a, invoice_b, invoice_c = (
        merchant.add_invoice(token=token, receiver=shop, amount="1000") for shop in (shop_a, shop_b, shop_c)
    )
    folder = agent_runner.prepare_agent(tmp_path / "agents", "agent0")
    env = agent_env(chain, stack, agent_runner.agent_address(folder), w3.eth.block_number)
    env.update({
        "SETTLEPROOF_CONFIRMATIONS": str(confirmations),
        "SETTLEPROOF_DATA_DIR": str(tmp_path / "store"),
    })
    url = f"http://127.0.0.1:{agent_runner.served_port(env)}"
    agent = agent_runner.AgentProcess(folder, env).start()
    try:
        agent.wait_for_line(r"keeper selected", timeout=TIMEOUT)

        # Shallow: the payment and the two blocks after it are replaced (3 blocks, none confirmed yet).
        orphan = transfer(w3, token, payer, shop_a, 1000)
        chain.mine(confirmations - 1)
        replacement = reorg(chain, w3, token, confirmations, {0: (other, shop_a, 1000)})[0]
        assert chain.rpc("eth_getTransactionReceipt", [orphan.tx_hash]) is None
        assert not any(orphan.tx_hash in line for line in agent.lines)  # never seen confirmed
        chain.mine(confirmations + 1)
        (settled,) = merchant.wait_for_events(1, timeout=TIMEOUT)
        assert settled["id"] == f"{invoice_a['uuid']}:{replacement}"

        # Deep: invoice B settles and the checkpoint passes it; then the chain from B's block on is replaced.
        paid_b = transfer(w3, token, payer, shop_b, 1000)
        head = chain.mine(confirmations + 1)
        merchant.wait_for_events(2, timeout=TIMEOUT)
        checkpoint = head - confirmations
        agent.wait_for(checkpoint_at_least(checkpoint), TIMEOUT, "the checkpoint past invoice B")
        assert paid_b.block_number < checkpoint
        depth = head - paid_b.block_number + 1
        reorg(chain, w3, token, depth, {depth - 1: (other, shop_c, 1000)})  # C only paid on the new chain
        assert chain.rpc("eth_getTransactionReceipt", [paid_b.tx_hash]) is None
        chain.mine(confirmations + 1)
        agent.wait_for(count_at_least(event(HALTED, block=checkpoint), 2), TIMEOUT, "two halted periods")
        assert events(agent.lines, "chain no longer holds the checkpoint block", block=checkpoint)
        assert wait_metric(url, "chain_reorg_halted_block", lambda v: v == checkpoint, 30) == checkpoint
        assert metric(url, "chain_reorg_detected_total") >= 1
    finally:
        agent.stop()

    report = merchant.report()
    assert {e["id"] for e in report["events"]} == {
        f"{invoice_a['uuid']}:{replacement}", f"{invoice_b['uuid']}:{paid_b.tx_hash}",
    }
    assert invoice_c["uuid"] not in {e["invoice_uuid"] for e in report["events"]}
    assert report["duplicates"] == {} and report["conflicts"] == [] and report["rejected"] == 0
    assert len(report["attempts"]) == 2  # nothing sent after the deep reorg
    assert not any(orphan.tx_hash in (a["webhook_id"] or "") for a in report["attempts"])
