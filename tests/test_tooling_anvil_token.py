"""The dev chain and test token produce the real Transfer logs the service will read."""

from __future__ import annotations

import os
import time

import pytest
from eth_account import Account
from web3 import Web3

from settleproof.anvil import Anvil, AnvilError
from settleproof.erc20 import DEFAULT_FUNDING, TRANSFER_TOPIC, balance_of, mint, transfer


def _pid_gone(pid: int) -> bool:
    """True when no process has this PID any more (ours are reaped by ``stop``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _topic(address: str) -> str:
    """An address as a 32-byte log topic."""
    return "0x" + "0" * 24 + address.lower()[2:]


def _hex(value) -> str:
    return Web3.to_hex(value) if isinstance(value, (bytes, bytearray)) else value


# ---------------------------------------------------------------------- anvil
def test_anvil_starts_answers_and_stops_by_pid(anvil_factory) -> None:
    node = anvil_factory(accounts=3, chain_id=31337)
    assert node.running and node.url.startswith("http://127.0.0.1:")
    assert int(node.rpc("eth_chainId"), 16) == 31337
    assert len(node.addresses()) == 3
    pid = node.pid
    node.stop()
    assert node.pid is None and _pid_gone(pid)
    node.stop()  # idempotent


@pytest.mark.e2e
def test_anvil_context_manager_stops_on_error() -> None:
    pid = None
    with pytest.raises(RuntimeError, match="boom"):
        with Anvil() as node:
            pid = node.pid
            raise RuntimeError("boom")
    assert pid is not None and _pid_gone(pid)


def test_anvil_start_failure_is_reported_fast() -> None:
    started = time.monotonic()
    with pytest.raises(AnvilError, match="exited"):
        Anvil(binary="/bin/false", startup_timeout=20).start()
    assert time.monotonic() - started < 10  # noticed the exit, did not wait out the deadline


def test_anvil_refuses_non_loopback_host() -> None:
    with pytest.raises(ValueError):
        Anvil(host="0.0.0.0")


def test_mine_snapshot_revert(anvil: Anvil) -> None:
    head = anvil.block_number()
    snap = anvil.snapshot()
    assert anvil.mine(5) == head + 5
    assert anvil.revert(snap) is True
    assert anvil.block_number() == head


def test_interval_mining_advances_without_transactions(anvil_factory) -> None:
    node = anvil_factory(block_time=0.2)
    start = node.block_number()
    deadline = time.monotonic() + 10
    while node.block_number() < start + 2:  # bounded poll of chain state, not a timed sleep
        assert time.monotonic() < deadline, "no blocks mined in 10 s at block_time=0.2"
    assert node.block_number() >= start + 2


# ---------------------------------------------------------------------- token
def test_deploy_funds_dev_accounts(w3: Web3, token: str) -> None:
    for account in w3.eth.accounts:
        assert balance_of(w3, token, account) == DEFAULT_FUNDING


def test_transfer_log_visible_via_get_logs(w3: Web3, token: str) -> None:
    sender, receiver = w3.eth.accounts[1], w3.eth.accounts[2]
    result = transfer(w3, token, sender, receiver, 12345)

    logs = w3.eth.get_logs(
        {
            "address": token,
            "fromBlock": result.block_number,
            "toBlock": result.block_number,
            "topics": [TRANSFER_TOPIC, None, _topic(receiver)],
        }
    )
    assert len(logs) == 1
    log = logs[0]
    assert [_hex(t) for t in log["topics"]] == [TRANSFER_TOPIC, _topic(sender), _topic(receiver)]
    assert int(_hex(log["data"]), 16) == 12345
    assert _hex(log["transactionHash"]) == result.tx_hash
    assert log["logIndex"] == result.log_index
    assert _hex(log["blockHash"]) == result.block_hash
    assert balance_of(w3, token, receiver) == DEFAULT_FUNDING + 12345
    assert balance_of(w3, token, sender) == DEFAULT_FUNDING - 12345
    tx_hash, block, index = result
    assert (tx_hash, block, index) == (result.tx_hash, result.block_number, result.log_index)


def test_transfer_refuses_instead_of_minting(w3: Web3, token: str) -> None:
    with pytest.raises(ValueError, match="mint"):
        transfer(w3, token, w3.eth.accounts[1], w3.eth.accounts[2], DEFAULT_FUNDING + 1)


def test_transfer_from_non_dev_account(w3: Web3, token: str) -> None:
    payer = Account.create().address
    mint(w3, token, payer, 500)
    result = transfer(w3, token, payer, w3.eth.accounts[3], 200)
    assert result.sender == payer
    assert balance_of(w3, token, payer) == 300


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_token_works_with_interval_mining(anvil: Anvil, w3: Web3, token: str) -> None:
    assert anvil.block_time == 1
    result = transfer(w3, token, w3.eth.accounts[4], w3.eth.accounts[5], 7)
    logs = w3.eth.get_logs({"address": token, "fromBlock": result.block_number, "toBlock": result.block_number})
    assert [(_hex(log["transactionHash"]), log["logIndex"]) for log in logs] == [(result.tx_hash, result.log_index)]
