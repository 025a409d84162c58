"""End to end: one real `aea run` agent, anvil, a real ERC-20 and a real merchant server.

The abci connection's `use_mock` (the framework's in-process Tendermint
stand-in for single-agent services) plays consensus; everything else is real:
HTTP to anvil through two providers (quorum 2: two chaos proxies, honest, each
on its own port, since the agent refuses two spellings of one address), HTTP to the merchant, and
webhooks verified by the `standardwebhooks` library inside the merchant.
"""

from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from eth_account import Account
from web3 import Web3

from packages.settleproof.skills.settlement_abci.outbox import MAX_ACKNOWLEDGEMENTS
from settleproof import agent_runner
from settleproof.agent_logs import checkpoint_at_least
from settleproof.anvil import Anvil
from settleproof.chaos import ChaosServer
from settleproof.erc20 import deploy_token, transfer
from settleproof.ipfs_stub import IpfsStub
from settleproof.merchant import Merchant, MerchantServer, new_secret
from settleproof.ports import free_port
from settleproof.service_env import settleproof_env


CONFIRMATIONS = 2
pytestmark = pytest.mark.e2e


@pytest.fixture
def chain() -> Iterator[Anvil]:
    """anvil mining a block per second, so the safe head moves on its own."""
    with Anvil(block_time=1) as node:
        yield node


@pytest.fixture
def stack(chain: Anvil, tmp_path: Path) -> Iterator[Dict]:
    """Token, merchant (still listing paid invoices as open), IPFS stub and two providers, all on loopback."""
    w3 = Web3(Web3.HTTPProvider(chain.url, request_kwargs={"timeout": 30}))
    token = deploy_token(w3)
    secret = new_secret()
    merchant = Merchant(secret, list_paid_as_open=True)
    with MerchantServer(secret=secret, merchant=merchant) as server, IpfsStub() as ipfs, \
            ChaosServer(chain.url) as provider_a, ChaosServer(chain.url) as provider_b:
        yield {"w3": w3, "token": token, "secret": secret, "merchant": server, "ipfs": ipfs,
               "providers": [provider_a.url, provider_b.url]}


def agent_env(chain: Anvil, stack: Dict, address: str, start_block: int) -> Dict[str, str]:
    """Everything one agent needs: mock Tendermint on a free port, the two providers, the merchant."""
    rpc_url = f"http://127.0.0.1:{free_port()}"
    merchant: MerchantServer = stack["merchant"]
    return {
        **agent_runner.framework_env(
            participants=[address],
            abci_port=free_port(),
            tendermint_rpc_url=rpc_url,
            # With use_mock, the mock serves the reset endpoints on its RPC port.
            tendermint_com_url=rpc_url,
            ipfs_multiaddr=stack["ipfs"].multiaddr,
            use_mock=True,
            round_timeout_seconds=15.0,
        ),
        "CONNECTION_LEDGER_CONFIG_LEDGER_APIS_ETHEREUM_ADDRESS": chain.url,
        **settleproof_env(
            stack["providers"],
            stack["token"], merchant, stack["secret"], CONFIRMATIONS, start_block,
        ),
    }


def test_paid_invoices_are_confirmed_once_each(chain: Anvil, stack: Dict, tmp_path: Path) -> None:
    """Paid invoices get exactly one verified webhook; unpaid, underpaid and repeat payments get none."""
    w3: Web3 = stack["w3"]
    token: str = stack["token"]
    merchant: MerchantServer = stack["merchant"]
    accounts: List[str] = w3.eth.accounts
    payer, other_payer = accounts[1], accounts[2]
    # Fresh receivers: the dev accounts also receive the token's initial mint.
    shop_a, shop_b, shop_c = (Account.create().address for _ in range(3))

    start = w3.eth.block_number
    invoice_a = merchant.add_invoice(token=token, receiver=shop_a, amount="1000")
    invoice_b = merchant.add_invoice(token=token, receiver=shop_b, amount="500", payer=payer)
    invoice_c = merchant.add_invoice(token=token, receiver=shop_c, amount="700")
    merchant.add_raw_invoice({"uuid": "garbage-1", "token": token, "receiver": shop_c, "amount": "-5"})

    folder = agent_runner.prepare_agent(tmp_path / "agents", "agent0")
    address = agent_runner.agent_address(folder)
    agent = agent_runner.AgentProcess(folder, agent_env(chain, stack, address, start))
    agent.start()
    try:
        agent.wait_for_line(r"keeper selected", timeout=180)
        paid_a = transfer(w3, token, payer, shop_a, 1500)
        transfer(w3, token, other_payer, shop_b, 500)  # wrong payer: must not settle invoice B
        paid_b = transfer(w3, token, payer, shop_b, 500)
        transfer(w3, token, payer, shop_c, 699)  # underpaid: must not settle invoice C
        repeat_a = transfer(w3, token, payer, shop_a, 1000)  # A already paid: no second event

        events = merchant.wait_for_events(2, timeout=180)
        agent.wait_for(checkpoint_at_least(repeat_a.block_number), 180, "a checkpoint past the last payment")
    finally:
        agent.stop()

    received = {event["id"] for event in merchant.events()}
    assert received == {
        f"{invoice_a['uuid']}:{paid_a.tx_hash}",
        f"{invoice_b['uuid']}:{paid_b.tx_hash}",
    }
    assert merchant.report()["rejected"] == 0
    # This merchant keeps paid invoices listed, so each acknowledged event may be sent again under its
    # own id (the list still shows it), never more than MAX_ACKNOWLEDGEMENTS times in all.
    duplicates = merchant.report()["duplicates"]
    assert set(duplicates) <= received and all(n < MAX_ACKNOWLEDGEMENTS for n in duplicates.values()), duplicates
    assert invoice_c["uuid"] not in {e["invoice_uuid"] for e in events}
    logs = "\n".join(agent.lines)
    assert "garbage-1" in logs and "field 'amount'" in logs


def test_invalid_setting_stops_start_up_with_one_line(chain: Anvil, stack: Dict, tmp_path: Path) -> None:
    """A bad value stops the real agent at start-up, and its last words name the variable."""
    folder = agent_runner.prepare_agent(tmp_path / "agents", "agent0")
    env = agent_env(chain, stack, agent_runner.agent_address(folder), 0)
    env["SETTLEPROOF_RPC_QUORUM"] = "3"
    agent = agent_runner.AgentProcess(folder, env).start()
    try:
        exit_code = agent.wait(timeout=120)
    finally:
        agent.stop()
    output = [line for line in agent.lines if line.strip()]
    assert exit_code != 0
    assert output[-1] == (
        "invalid configuration: SETTLEPROOF_RPC_QUORUM: "
        "3 exceeds the 2 endpoint(s) in SETTLEPROOF_RPC_ENDPOINTS"
    )
