"""4 real agents on 4 Tendermint validators keep settling through provider faults and agent outages.

One run, four phases: a provider down; then, with another provider
fabricating a payment in every answer from there on, an agent down (3 of 4 is
still the threshold); then the agent back: it rejoins and follows live blocks.
Every paid invoice reaches the merchant exactly once, verified, and the
fabricated payments never settle the open invoice they target. Last, two agents
killed as a period starts: a validator cannot run without its app, so the chain
halts; started again, the two are replayed the chain, blocks resume, and the
round that was running times out on block time and runs again: /metrics counts
the retry.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Callable, List, Optional

import pytest
from eth_account import Account
from web3 import Web3

from settleproof.agent_logs import checkpoint_at_least, event, latest_keeper
from settleproof.chaos import ChaosServer
from settleproof.devnet.network import Devnet
from settleproof.erc20 import transfer
from settleproof.merchant import MerchantServer
from settleproof.service_env import settleproof_env
from tests.scrape import scrape, total, wait_for_metrics
from tests.devnet_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    devnet_factory,
    devnet_templates,
)
from tests.test_devnet import FAST
from tests.test_e2e_bft import still_for


def period_started(line: str, period: int) -> Optional[bool]:
    """The line where the agent names the keeper of `period` or a later one."""
    record = event("keeper selected")(line)
    return True if record is not None and record["period"] >= period else None


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_provider_down_then_agent_down_then_back(  # pylint: disable=too-many-locals
    devnet_factory: Callable[..., Devnet],  # noqa: F811
    w3: Web3,
    token: str,
    merchant: MerchantServer,
    webhook_secret: str,
    anvil: Any,
) -> None:
    """Settlements continue with a provider down and with 3 of 4 agents; the 4th rejoins."""
    payer = w3.eth.accounts[1]
    with ExitStack() as stack:
        providers = [stack.enter_context(ChaosServer(anvil.url)) for _ in range(3)]
        urls = [p.url for p in providers]
        env = settleproof_env(urls, token, merchant, webhook_secret, 2, w3.eth.block_number)
        # The lowest receiver comes first in every log filter: the liar's fake payments pay it.
        bait = merchant.add_invoice(token=token, receiver="0x" + "0" * 39 + "1", amount="1000")
        net = devnet_factory(4, env, settings=FAST)
        net.wait_registered(timeout=180)
        expected: List[str] = []

        def pay_and_confirm(step: str) -> int:
            shop = Account.create().address
            invoice = merchant.add_invoice(token=token, receiver=shop, amount="1000")
            paid = transfer(w3, token, payer, shop, 1000)
            expected.append(f"{invoice['uuid']}:{paid.tx_hash}")
            events = merchant.wait_for_events(len(expected), timeout=150)
            assert {e["id"] for e in events} == set(expected), step
            return paid.block_number

        providers[0].set_fault("down")
        pay_and_confirm("provider 0 down")
        providers[0].clear()
        providers[2].set_fault("fabricate", value=10**6)

        net.stop_agent(3)
        block = pay_and_confirm("agent 3 down")
        net.agent(0).wait_for(checkpoint_at_least(block), 90, "a checkpoint with 3 agents")

        net.start_agent(3)
        block = pay_and_confirm("agent 3 back")
        net.agent(3).wait_for(checkpoint_at_least(block), 240, "agent 3 following live blocks")
        liar_traffic = providers[2].traffic()

        # Two of four killed as a period starts (so inside the settlement rounds, not in a reset): their
        # nodes wait for their apps, so 2 of 4 validators are gone and the chain halts. Started again,
        # the agents are replayed the chain; the first new block is stamped long after the halt, so the
        # round that was running times out and is run again: the agents count it on their /metrics.
        retries_before = total(scrape(net.metrics_url(0)), "consensus_round_retries_total")
        latest, _ = latest_keeper([net.agent(0).lines])
        net.agent(0).wait_for(lambda line: period_started(line, latest + 1), 120, "the next period")
        net.kill_agent(2)
        net.kill_agent(3)
        halted_at = max(net.node(0).height(), net.node(1).height())
        shop = Account.create().address
        invoice = merchant.add_invoice(token=token, receiver=shop, amount="1000")
        paid = transfer(w3, token, payer, shop, 1000)
        expected.append(f"{invoice['uuid']}:{paid.tx_hash}")
        # The outage lasts longer than a round timeout, watched on the live nodes: no block meanwhile.
        stall = max(still_for(net, [0, 1], FAST.round_timeout + 5))
        assert stall <= halted_at + 1 and len(merchant.events()) == len(expected) - 1  # halted: nothing new
        net.start_agent(2)
        net.start_agent(3)
        merchant.wait_for_events(len(expected), timeout=240)
        stalled = wait_for_metrics(
            net.metrics_url(0), lambda m: total(m, "consensus_round_retries_total") > retries_before, 120
        )
        retried = {labels["round"] for labels, _ in stalled["consensus_round_retries_total"]}
        assert total(stalled, "consensus_round_retries_total") > retries_before
        assert retried and all(name.endswith("_round") for name in retried)
        assert net.node(0).height() > stall  # the chain moved on

    report = merchant.report()
    assert {e["id"] for e in merchant.events()} == set(expected)
    assert report["rejected"] == 0 and not report["conflicts"]
    assert bait["uuid"] not in {e["invoice_uuid"] for e in merchant.events()}
    assert liar_traffic["faulted"] > 0, "the liar was never asked for logs"
