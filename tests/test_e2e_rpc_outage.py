"""End to end: a real agent behind three chaos proxies loses its provider quorum, then gets it back.

Same harness as `test_e2e_single_agent.py` (one `aea run` agent with the abci
mock, anvil mining every second, a real merchant), but the agent reads the
chain through three `ChaosServer`s with quorum 2 and small `eth_getLogs`
chunks. With two providers failing, nothing is settled and the checkpoint
stays put; once they are back (and the breakers' short cool-down has
passed), the payment made during the outage is settled exactly once.
"""

from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest
from eth_account import Account
from web3 import Web3

from settleproof import agent_runner
from settleproof.agent_logs import checkpoint_at_least, event, events
from settleproof.anvil import Anvil
from settleproof.chaos import ChaosServer
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
COOLDOWN_SECONDS = 2


@pytest.fixture
def proxies(chain: Anvil) -> Iterator[List[ChaosServer]]:  # noqa: F811
    """Three providers in front of the chain."""
    with ChaosServer(chain.url) as a, ChaosServer(chain.url) as b, ChaosServer(chain.url) as c:
        yield [a, b, c]


def count_at_least(matches: Callable[[str], object], times: int) -> Callable[[str], Optional[bool]]:
    """A line matcher that fires on the `times`-th line `matches` accepts."""
    seen = []

    def found(line: str) -> Optional[bool]:
        if matches(line):
            seen.append(line)
        return True if len(seen) >= times else None

    return found


def test_no_quorum_settles_nothing_then_providers_back_settle_everything(
    chain: Anvil, stack: Dict, proxies: List[ChaosServer], tmp_path: Path  # noqa: F811
) -> None:
    """Two of three providers fail: no webhook, checkpoint unchanged; back: the payment settles once."""
    w3: Web3 = stack["w3"]
    merchant: MerchantServer = stack["merchant"]
    shop = Account.create().address
    invoice = merchant.add_invoice(token=stack["token"], receiver=shop, amount="1000")

    folder = agent_runner.prepare_agent(tmp_path / "agents", "agent0")
    env = agent_env(chain, stack, agent_runner.agent_address(folder), w3.eth.block_number)
    env["SETTLEPROOF_RPC_ENDPOINTS"] = ",".join(p.url for p in proxies)
    env[f"{PARAMS}MAX_LOG_RANGE"] = "4"
    env[f"{PARAMS}RPC_BREAKER_COOLDOWN_SECONDS"] = str(float(COOLDOWN_SECONDS))
    agent = agent_runner.AgentProcess(folder, env).start()
    try:
        agent.wait_for(checkpoint_at_least(0), 180, "a first checkpoint")
        proxies[1].set_fault("down")
        proxies[2].set_fault("status", status=503)
        outage_starts = len(agent.lines)
        paid = transfer(w3, stack["token"], w3.eth.accounts[1], shop, 1000)
        agent.wait_for(count_at_least(event("no provider quorum on the head"), 2), 120, "two periods without quorum")
        during = agent.lines[outage_starts:]
        assert merchant.events() == []
        checkpoints = {record["block"] for record in events(during, "checkpoint")}
        assert len(checkpoints) <= 2  # the period in flight when the outage began, then no move
        assert max(checkpoints, default=0) < paid.block_number
        # /metrics during the outage: head quorum failures counted, the down provider's breaker open (2)
        down = proxies[1].url.split("//")[1]
        outage = wait_for_metrics(
            f"http://127.0.0.1:{agent_runner.served_port(env)}",
            lambda m: total(m, "rpc_circuit_breaker_state", provider=down) == 2, 60,
        )
        assert total(outage, "rpc_quorum_failures_total", check="head") >= 2
        failed = total(outage, "rpc_requests_total", provider=down) - total(
            outage, "rpc_requests_total", provider=down, outcome="ok"
        )
        assert failed >= 3  # refused or skipped while its breaker is open

        for proxy in proxies:
            proxy.clear()
        merchant.wait_for_events(1, timeout=120)
        agent.wait_for(checkpoint_at_least(paid.block_number), 120, "a checkpoint past the payment")
        # latency histograms: every provider's answers, and the webhook POST
        latencies = wait_for_metrics(
            f"http://127.0.0.1:{agent_runner.served_port(env)}",
            lambda m: total(m, "webhook_delivery_latency_ms_count") >= 1, 60,
        )
        for proxy in proxies:
            assert total(latencies, "rpc_provider_latency_ms_count", provider=proxy.url.split("//")[1]) > 0
    finally:
        agent.stop()

    assert [e["id"] for e in merchant.events()] == [f"{invoice['uuid']}:{paid.tx_hash}"]
    assert not merchant.report()["duplicates"] and merchant.report()["rejected"] == 0
    assert events(agent.lines, "provider failed", provider=down)
    assert max(proxies[0].traffic()["get_logs_spans"]) <= 4
