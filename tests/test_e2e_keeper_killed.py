"""End to end on the devnet: the keeper is killed after its POST but before its report reaches consensus.

Four real agents on the devnet's chain. The merchant holds the first webhook
request (an injected delay), so the keeper has POSTed but has no reply yet;
the test then kills that keeper with SIGKILL. Its report never reaches
consensus, the keeper round times out, the next keeper delivers again from the
agreed outbox: the merchant sees the same id twice (a duplicate it
acknowledges), never a new id for the same payment. The agents' /metrics and
their JSON log files (grepped for the payment's tx_hash) tell the same story.
"""

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from eth_account import Account
from web3 import Web3

from settleproof.agent_logs import checkpoint_at_least, event, events, latest_keeper
from settleproof.devnet.agents import FrameworkSettings
from settleproof.devnet.network import Devnet
from settleproof.erc20 import transfer
from settleproof.merchant import MerchantServer
from settleproof.service_env import settleproof_env
from tests.scrape import total, wait_for_metrics
from tests.devnet_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    devnet_factory,
    devnet_templates,
)


pytestmark = pytest.mark.e2e
FAST = FrameworkSettings(round_timeout=15.0, reset_pause_duration=10)
HOLD_SECONDS = 6.0


def payment_trail(log_file: Path, tx_hash: str) -> List[Dict[str, Any]]:
    """The records of an agent's log file that name `tx_hash`; every line must be a JSON record."""
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    return [r for r in records if r.get("tx_hash") == tx_hash]


def first_seen(trail: List[Dict[str, Any]]) -> List[str]:
    """The trail's messages in the order they first appear."""
    return list(dict.fromkeys(r["message"] for r in trail))


def current_keeper(net: Devnet, agents: int) -> int:
    """The index of the agent every agent named keeper for the latest period."""
    _, keeper = latest_keeper(net.agent(index).lines for index in range(agents))
    return [a.lower() for a in net.addresses].index(keeper)


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_keeper_killed_after_post_before_consensus(
    devnet_factory: Callable[..., Devnet],  # noqa: F811
    w3: Web3, token: str, merchant: MerchantServer, webhook_secret: str, anvil: Any,
    rpc_providers: Callable[..., List[str]],
) -> None:
    """The killed keeper's POST and the next keeper's POST carry the same id; one event at the merchant."""
    shop = Account.create().address
    invoice = merchant.add_invoice(token=token, receiver=shop, amount="1000")
    providers = rpc_providers(anvil.url, 2)
    env = settleproof_env(providers, token, merchant, webhook_secret, 2, w3.eth.block_number)
    merchant.delay(HOLD_SECONDS, count=1)  # the first POST is held: sent, but not answered yet
    net = devnet_factory(4, env, settings=FAST)
    paid = transfer(w3, token, w3.eth.accounts[1], shop, 1000)
    net.wait_registered(timeout=180)

    (arrival,) = merchant.wait_for_arrivals(1, timeout=180)
    keeper = current_keeper(net, 4)
    net.agent(keeper).wait_for(event("delivering"), HOLD_SECONDS / 2, "delivering")  # it is the one POSTing
    net.kill_agent(keeper)  # after its POST, before any reply, so before its report
    event_id = f"{invoice['uuid']}:{paid.tx_hash}"
    assert arrival["webhook_id"] == event_id

    survivors = [i for i in range(4) if i != keeper]
    net.agent(survivors[0]).wait_for_line(r"'keeper_failover_round' round is done", timeout=120)
    merchant.wait_for_attempts(2, timeout=120)
    for index in survivors:
        net.agent(index).wait_for(checkpoint_at_least(paid.block_number), 120, f"agent {index} checkpoint")

    report = merchant.report()
    assert [e["id"] for e in report["events"]] == [event_id]
    assert {a["webhook_id"] for a in report["attempts"]} == {event_id}
    assert len(report["attempts"]) == 2 and report["duplicates"] == {event_id: 1}
    assert report["rejected"] == 0 and report["conflicts"] == []
    assert events(net.agent(keeper).lines, "webhook attempt") == []  # it never saw a reply

    # The survivors' /metrics tell the same story (read over HTTP, as Prometheus would), once each has
    # committed the checkpoint past the payment and a later period saw the merchant close the invoice
    # (the acknowledged event leaves the outbox then; metrics move when the round ends).
    def settled(m: Any) -> bool:
        return total(m, "settlement_checkpoint_block") >= paid.block_number and total(m, "webhook_outbox_depth") == 0

    scraped = [wait_for_metrics(net.metrics_url(i), settled, 60) for i in survivors]
    for samples in scraped:
        assert total(samples, "keeper_failover_total") >= 1
        assert total(samples, "keeper_selection_rounds_total") >= 1
        assert total(samples, "settlement_commit_seq") >= 2  # the Dedupe commit and a Checkpoint
        assert total(samples, "webhook_outbox_depth") == 0
    # only the new keeper POSTed among the survivors: one delivery, one verification latency
    assert sum(total(s, "webhook_deliveries_total", outcome="delivered") for s in scraped) == 1
    assert sum(total(s, "invoice_verification_latency_seconds_count") for s in scraped) == 1

    # One grep of the agents' JSON log files for the payment's tx_hash gives its whole path.
    trails = [payment_trail(net.slots[i].folder / "log.txt", paid.tx_hash) for i in range(4)]
    for index, trail in enumerate(trails):
        assert {r["agent"] for r in trail} == {net.addresses[index]}
        assert all(isinstance(r["period"], int) and r["round"].endswith("_round") for r in trail)
        assert first_seen(trail)[:2] == ["payment observed", "invoice settled"]
        assert {r["block"] for r in trail if "block" in r} == {paid.block_number}
        assert {r["invoice_uuid"] for r in trail if "invoice_uuid" in r} == {invoice["uuid"]}
    for index in survivors:
        assert first_seen(trails[index])[-1] == "webhook delivered"
    assert "webhook delivered" not in first_seen(trails[keeper])  # killed before the commit
    (posted,) = [r for i in survivors for r in trails[i] if r["message"] == "webhook attempt"]
    assert (posted["status"], posted["outcome"], posted["event_id"]) == (200, "delivered", event_id)
