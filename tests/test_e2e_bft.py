"""Byzantine fault tolerance at the consensus layer: 4 real agents on 4 real Tendermint validators.

Tendermint needs more than 2/3 of the voting power (3 of 4 validators) to make
a block. These tests take nodes away, by kill -9, by a clean stop or by
cutting their P2P links, and check what the merchant gets: every paid invoice
exactly once, under its one id, and nothing while the chain cannot make
blocks. Each step waits on an event: a node's ``/status``, an agent's log
line, the merchant's state. The whole service killed and restarted on its
data dir is in ``test_e2e_durability``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Sequence, Tuple

import pytest
from eth_account import Account
from web3 import Web3

from settleproof.agent_logs import checkpoint_at_least, event
from settleproof.devnet.agents import FrameworkSettings
from settleproof.devnet.network import Devnet
from settleproof.erc20 import transfer
from settleproof.merchant import MerchantServer
from settleproof.service_env import settleproof_env
from tests.devnet_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    devnet_factory,
    devnet_templates,
)


pytestmark = pytest.mark.e2e
FAST = FrameworkSettings(round_timeout=15.0, reset_pause_duration=10)
TIMEOUT = 180.0
# How long the chain must stay still to count as halted: many block intervals, and well under the
# framework's 60 s block-stall tolerance, after which agents reset their nodes.
HALT_WINDOW = 12.0


class Payments:
    """Invoices created and paid one at a time; what the merchant must end up with."""

    def __init__(self, w3: Web3, token: str, merchant: MerchantServer) -> None:
        """Nothing paid yet."""
        self.w3, self.token, self.merchant = w3, token, merchant
        self.expected: List[str] = []

    def pay(self) -> int:
        """Create an invoice for a new shop and pay it; the payment's block."""
        shop = Account.create().address
        invoice = self.merchant.add_invoice(token=self.token, receiver=shop, amount="1000")
        paid = transfer(self.w3, self.token, self.w3.eth.accounts[1], shop, 1000)
        self.expected.append(f"{invoice['uuid']}:{paid.tx_hash}")
        return paid.block_number

    def wait_settled(self, step: str) -> None:
        """Every payment so far at the merchant, verified, each under its one id."""
        events = self.merchant.wait_for_events(len(self.expected), timeout=TIMEOUT)
        assert sorted(e["id"] for e in events) == sorted(self.expected), step  # one period may POST in any order

    def check_exactly_once(self) -> None:
        """No other id, no conflicting settlement, nothing unverified."""
        report = self.merchant.report()
        assert sorted(e["id"] for e in report["events"]) == sorted(self.expected)
        assert report["rejected"] == 0 and report["conflicts"] == [] and report["unverified"] == []


def heights(net: Devnet, indices: Sequence[int]) -> List[int]:
    """Each node's latest height (0 for a node that does not answer)."""
    return [net.node(index).height() for index in indices]


def still_for(net: Devnet, indices: Sequence[int], seconds: float) -> List[int]:
    """Watch the nodes for ``seconds``: the highest heights seen (a halted chain does not grow)."""
    highest = heights(net, indices)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        highest = [max(a, b) for a, b in zip(highest, heights(net, indices))]
        time.sleep(0.5)
    return highest


def wait_caught_up(net: Devnet, index: int, others: Sequence[int]) -> None:
    """Node ``index`` holds every block the others held when we asked."""
    target = max(heights(net, others))
    net.node(index).wait_height(target, timeout=TIMEOUT)
    status = net.node(index).status()
    assert status is not None and status["sync_info"]["catching_up"] is False


RESET_DONE = "Resetting tendermint node successful"


def nth(text: str, count: int) -> Callable[[str], Any]:
    """A line matcher that fires on the ``count``-th line containing ``text``."""
    seen = []

    def found(line: str) -> Any:
        if text in line:
            seen.append(line)
        return True if len(seen) >= count else None

    return found


def on_one_chain(net: Devnet) -> str:
    """Poll the 4 nodes' ``/status`` until they all answer with the same chain id; that id."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        statuses = [net.node(index).status() for index in range(4)]
        networks = {s["node_info"]["network"] if s else None for s in statuses}
        if len(networks) == 1 and None not in networks:
            return str(networks.pop())
        assert time.monotonic() < deadline, f"nodes on {networks} after {TIMEOUT}s"
        time.sleep(0.5)


Service = Tuple[Devnet, Payments]


@pytest.fixture
def start_service(
    devnet_factory: Callable[..., Devnet],  # noqa: F811
    w3: Web3, token: str, merchant: MerchantServer, webhook_secret: str, anvil: Any,
    rpc_providers: Callable[..., List[str]],
) -> Callable[..., Service]:
    """``start(settings)``: 4 agents on 4 validators, two providers (proxies) for one anvil, 2 confirmations, registered."""

    def start(settings: FrameworkSettings = FAST) -> Service:
        providers = rpc_providers(anvil.url, 2)
        env = settleproof_env(providers, token, merchant, webhook_secret, 2, w3.eth.block_number)
        net = devnet_factory(4, env, settings=settings)
        net.wait_registered(timeout=TIMEOUT)
        return net, Payments(w3, token, merchant)

    return start


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_a_node_killed_then_another_cut_off(start_service: Callable[..., Service]) -> None:
    """kill -9 one node (its agent lives on): 3 validators settle; restarted, it catches up and is needed
    again. Then another node loses its peers mid-period: the other 3 settle; reconnected, it catches up.
    One id per payment throughout."""
    net, payments = start_service()

    net.kill_node(1)
    block = payments.pay()
    payments.wait_settled("node 1 killed")
    net.agent(0).wait_for(checkpoint_at_least(block), TIMEOUT, "a checkpoint made by 3 validators")
    net.restart_node(1)
    wait_caught_up(net, 1, [0, 2, 3])
    net.agent(1).wait_for(checkpoint_at_least(block), TIMEOUT, "agent 1 committing the checkpoint it missed")

    # Node 3 is cut off as a period starts: blocks now need node 1's vote, so settling proves it
    # takes part again.
    cut = 3
    period = net.agent(cut).wait_for(event("keeper selected"), TIMEOUT, "a period starting")["period"]
    net.agent(cut).wait_for(event("keeper selected", period=period + 1), TIMEOUT, "the next period starting")
    net.cut_node(cut)
    block = payments.pay()
    payments.wait_settled("node 1 back, node 3 cut off")
    net.agent(1).wait_for(checkpoint_at_least(block), TIMEOUT, "agent 1 following live blocks")
    stalled = net.node(cut).height()
    assert max(heights(net, [0, 1, 2])) > stalled  # the others went on without it

    net.heal_node(cut)
    wait_caught_up(net, cut, [0, 1, 2])
    net.agent(cut).wait_for(checkpoint_at_least(block), TIMEOUT, "agent 3 committing what it missed")
    block = payments.pay()
    payments.wait_settled("node 3 reconnected")
    net.agent(cut).wait_for(checkpoint_at_least(block), TIMEOUT, "agent 3 following live blocks")
    payments.check_exactly_once()


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_two_of_four_nodes_down_halt_the_chain_and_lose_nothing(start_service: Callable[..., Service]) -> None:
    """2 of 4 validators stopped: no block, nothing settled; both back: what was paid meanwhile settles once."""
    net, payments = start_service()
    payments.pay()
    payments.wait_settled("all up")

    net.stop_node(2)
    net.stop_node(3)
    before = heights(net, [0, 1])
    blocks = [payments.pay(), payments.pay()]
    after_window = still_for(net, [0, 1], HALT_WINDOW)
    # At most the block that was being committed as the nodes stopped.
    assert max(after_window) <= max(before) + 1, (before, after_window)
    assert len(payments.merchant.events()) == 1  # nothing settled while the chain was halted

    net.start_node(2)
    net.start_node(3)
    payments.wait_settled("both nodes back")
    for index in range(4):
        net.agent(index).wait_for(checkpoint_at_least(max(blocks)), TIMEOUT, f"agent {index} checkpoint")
    payments.check_exactly_once()


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_hard_resets_in_a_row_across_four_nodes(start_service: Callable[..., Service]) -> None:
    """Every period ends in a hard reset of all 4 nodes (``/hard_reset``); payments between resets settle once."""
    settings = FrameworkSettings(round_timeout=15.0, reset_pause_duration=10, reset_tendermint_after=1)
    net, payments = start_service(settings)
    for resets in range(1, 4):
        payments.pay()
        payments.wait_settled(f"after {resets - 1} resets")
        for index in range(4):
            net.agent(index).wait_for(nth(RESET_DONE, resets), TIMEOUT, f"agent {index}: hard reset {resets}")
    # Each hard reset started a fresh chain named after the period; the 4 nodes meet on one of them.
    assert on_one_chain(net).startswith("autonolas-")
    payments.pay()
    payments.wait_settled("after the resets")
    payments.check_exactly_once()
