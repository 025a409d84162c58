"""End to end: a real agent delivers through a merchant outage, dead-letters a 410, and the operator replays it.

Same harness as `test_e2e_single_agent.py` (one `aea run` agent with the abci
mock, anvil mining every second). The merchant's webhook endpoint runs on a
server of its own (same merchant state), so it can refuse connections while
the invoice list stays reachable. Backoff is shortened to seconds so that
every period retries.
"""

from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

import pytest
from click.testing import CliRunner
from eth_account import Account
from web3 import Web3

from packages.settleproof.skills.settlement_abci.store import Store
from settleproof import agent_runner
from settleproof.agent_logs import checkpoint_at_least, event
from settleproof.anvil import Anvil
from settleproof.cli import main
from settleproof.erc20 import transfer
from settleproof.merchant import MerchantServer
from tests.scrape import total, wait_for_metrics
from tests.test_e2e_single_agent import (  # noqa: F401  # pylint: disable=unused-import
    agent_env,
    chain,
    stack,
)


pytestmark = pytest.mark.e2e
PARAMS = agent_runner.SKILL_PARAMS


def attempts_at_least(event_ids: set, status: int, times: int) -> Callable[[str], Optional[bool]]:
    """Fires once each of `event_ids` had `times` attempts answered with `status`."""
    counts: Dict[str, int] = {}

    def found(line: str) -> Optional[bool]:
        record = event("webhook attempt", status=status)(line)
        if record is not None and record["event_id"] in event_ids:
            counts[record["event_id"]] = counts.get(record["event_id"], 0) + 1
        return True if len(counts) == len(event_ids) and min(counts.values()) >= times else None

    return found


@pytest.fixture
def webhook_endpoint(stack: Dict) -> Iterator[MerchantServer]:  # noqa: F811
    """The merchant's webhook on its own port, down (connection refused) until the test starts it."""
    server = MerchantServer(merchant=stack["merchant"].merchant).start()
    server.stop()
    yield server
    server.stop()


def test_outage_then_back_delivers_same_ids_and_410_is_dead_lettered_then_replayed(
    chain: Anvil, stack: Dict, webhook_endpoint: MerchantServer, tmp_path: Path  # noqa: F811
) -> None:
    """Two payments during a webhook outage: retried each period; when the endpoint is back, one event
    is answered 410 (dead-lettered once the next attempt confirms it, never re-sent after) and the other
    is delivered with its original id. The store holds the dead letter, and a replay delivers it."""
    w3: Web3 = stack["w3"]
    merchant: MerchantServer = stack["merchant"]
    merchant.list_paid_as_open = False  # it closes an invoice once paid: a 2xx is never sent again
    shops = [Account.create().address for _ in range(2)]
    invoices = [merchant.add_invoice(token=stack["token"], receiver=shop, amount="1000") for shop in shops]

    folder = agent_runner.prepare_agent(tmp_path / "agents", "agent0")
    data_dir = tmp_path / "store"
    env = agent_env(chain, stack, agent_runner.agent_address(folder), w3.eth.block_number)
    env.update({
        "SETTLEPROOF_WEBHOOK_URL": webhook_endpoint.webhook_url,
        "SETTLEPROOF_DATA_DIR": str(data_dir),
        f"{PARAMS}WEBHOOK_BACKOFF_BASE_SECONDS": "1.0",
        f"{PARAMS}WEBHOOK_BACKOFF_CAP_SECONDS": "2.0",
    })
    agent = agent_runner.AgentProcess(folder, env).start()
    try:
        agent.wait_for(checkpoint_at_least(0), 180, "a first checkpoint")
        paid = [transfer(w3, stack["token"], w3.eth.accounts[1], shop, 1000) for shop in shops]
        ids = {f"{invoice['uuid']}:{tx.tx_hash}" for invoice, tx in zip(invoices, paid)}
        agent.wait_for(attempts_at_least(ids, 0, 3), 180, "three refused attempts of each event")
        assert merchant.report()["attempts"] == []

        # The first event to arrive after the outage is answered 410, and so is every resend of it.
        webhook_endpoint.fail(410, count=1, sticky=True)
        webhook_endpoint.start()
        (delivered,) = merchant.wait_for_events(1, timeout=120)
        dead = agent.wait_for(event("webhook dead-lettered", reason="gone"), 120, "a dead letter")["event_id"]
        agent.wait_for(checkpoint_at_least(max(tx.block_number for tx in paid)), 120, "a later checkpoint")
        after_dead = len(agent.lines)
        agent.wait_for(checkpoint_at_least(w3.eth.block_number), 120, "another period")
        # the same story on the agent's /metrics: retries while down, one delivery, one dead letter
        metrics = wait_for_metrics(
            f"http://127.0.0.1:{agent_runner.served_port(env)}",
            lambda m: total(m, "webhook_dlq_depth") == 1 and total(m, "webhook_outbox_depth") == 0, 60,
        )
    finally:
        agent.stop()
    assert total(metrics, "webhook_deliveries_total", outcome="retry") >= 6
    assert total(metrics, "webhook_deliveries_total", outcome="delivered") == 1
    assert total(metrics, "webhook_deliveries_total", outcome="gone") == 2  # the 410 and its confirmation
    assert total(metrics, "webhook_dlq_total", reason="gone") == 1
    assert total(metrics, "invoice_verification_latency_seconds_count") == 1
    assert total(metrics, "webhook_outbox_depth") == 0

    assert {delivered["id"], dead} == ids  # the original ids: never a new one for the same payment
    attempts = merchant.report()["attempts"]
    # One keeper's 410 is confirmed by the next attempt (this single agent is every keeper) before
    # the event is dead-lettered; never sent again after that.
    assert [(a["webhook_id"], a["status"]) for a in attempts if a["webhook_id"] == dead] == [(dead, 410)] * 2
    assert [a["status"] for a in attempts if a["webhook_id"] == delivered["id"]] == [204]
    assert not any(dead in line and "webhook attempt" in line for line in agent.lines[after_dead:])
    assert merchant.report()["rejected"] == 0

    store = Store.open(data_dir)
    (letter,) = store.dead_letters()
    assert (letter.id, letter.dead_reason, letter.last_status) == (dead, "gone", 410)
    assert letter.attempts >= 4 and store.outbox() == []
    assert store.checkpoint() is not None and store.checkpoint().block >= max(tx.block_number for tx in paid)
    store.close()

    replay_env = {"SETTLEPROOF_DATA_DIR": str(data_dir), "SETTLEPROOF_WEBHOOK_URL": webhook_endpoint.webhook_url,
                  "SETTLEPROOF_WEBHOOK_SECRET": stack["secret"]}
    webhook_endpoint.clear_faults()  # the merchant fixed its endpoint: the operator replays
    result = CliRunner().invoke(main, ["dlq", "replay", dead], env=replay_env)
    assert result.exit_code == 0, result.output
    assert {e["id"] for e in merchant.events()} == ids
