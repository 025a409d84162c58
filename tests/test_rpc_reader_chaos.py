"""The agent's quorum reader against anvil through three chaos proxies, one fault at a time.

The reader is the very code the agent runs (sans I/O), driven here with aiohttp
(`tests/rpc_driver.py`) instead of the framework's HTTP connection, so each case
takes well under a second. The chain holds real ERC-20 payments spread over
more blocks than one `eth_getLogs` chunk; whatever one provider does, every
payment is found exactly once and nothing fabricated is ever accepted.
"""

from typing import Any, Dict, Iterator, List, Tuple

import pytest
from eth_account import Account
from web3 import Web3

from settleproof.anvil import Anvil
from settleproof.chaos import ChaosServer
from settleproof.erc20 import TransferResult, deploy_token, transfer

from packages.settleproof.skills.settlement_abci.breaker import BreakerState
from packages.settleproof.skills.settlement_abci.retry_policy import RetryPolicy
from packages.settleproof.skills.settlement_abci.rpc_exchange import ExchangeConfig
from tests.rpc_driver import Scanner, run


pytestmark = pytest.mark.e2e
PAYMENTS = 9
GAP = 150  # blocks mined between payments: the scan spans ~1400 blocks, several chunks
MAX_LOG_RANGE = 500
MAX_REPLY_BYTES = 1024 * 1024
COOLDOWN = 30.0


@pytest.fixture(scope="module")
def paid_chain() -> Iterator[Dict[str, Any]]:
    """A chain of its own with PAYMENTS transfers to three shops, GAP blocks apart."""
    with Anvil() as node:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        token = deploy_token(w3)
        shops = [Account.create().address for _ in range(3)]
        start = w3.eth.block_number + 1
        paid: List[TransferResult] = []
        for n in range(PAYMENTS):
            paid.append(transfer(w3, token, w3.eth.accounts[1 + n % 3], shops[n % 3], 1000 + n))
            node.mine(GAP)
        node.mine(5)
        yield {"anvil": node, "token": token, "shops": shops, "start": start, "paid": paid}


@pytest.fixture
def providers(paid_chain: Dict[str, Any]) -> Iterator[Tuple[ChaosServer, ChaosServer, ChaosServer]]:
    """Three honest-for-now providers in front of the chain."""
    url = paid_chain["anvil"].url
    with ChaosServer(url) as a, ChaosServer(url) as b, ChaosServer(url) as c:
        yield a, b, c


def scanner(paid_chain: Dict[str, Any], proxies: Tuple[ChaosServer, ...], **options: Any) -> Scanner:
    """The agent's reads with short timeouts and backoff, as a test can afford."""
    retry = RetryPolicy(attempts=3, budget_seconds=1.0, initial_seconds=0.02, max_wait_seconds=0.1, jitter_seconds=0.02)
    return Scanner(
        urls=[p.url for p in proxies],
        tokens=[paid_chain["token"]],
        receivers=paid_chain["shops"],
        max_log_range=MAX_LOG_RANGE,
        config=ExchangeConfig(request_timeout=0.5, retry=retry, max_reply_bytes=MAX_REPLY_BYTES),
        **options,
    )


def scan_all(paid_chain: Dict[str, Any], reader: Scanner) -> Tuple[List[str], int]:
    """Scan from the first payment's block to the safe head: (tx hashes found, in order; checkpoint)."""
    head = paid_chain["anvil"].block_number()
    found, checkpoint = run(reader.scan(paid_chain["start"] - 1, head - reader.confirmations))
    return [p.transfer.tx_hash for p in found], checkpoint


def expected(paid_chain: Dict[str, Any]) -> List[str]:
    """The payments made on chain, in chain order."""
    return [p.tx_hash.lower() for p in paid_chain["paid"]]


FAULTS = {
    "down": {"fault": "down"},
    "slow": {"fault": "delay", "seconds": 0.2},
    "hanging": {"fault": "hang"},
    "503": {"fault": "status", "status": 503},
    "429": {"fault": "status", "status": 429, "retry_after": "1"},
    "lagging 50 blocks": {"fault": "lag", "blocks": 50},
    "fabricated log": {"fault": "fabricate", "methods": ["eth_getLogs"]},
    "dropped log": {"fault": "drop"},
    "altered value": {"fault": "alter", "value": 10**24},
    "garbage": {"fault": "garbage"},
    "truncated": {"fault": "truncate"},
    "huge": {"fault": "huge", "size": 2 * MAX_REPLY_BYTES},
    "range-limited (Alchemy)": {"fault": "limit", "max_range": 100, "style": "alchemy"},
    "range-limited (Infura)": {"fault": "limit", "max_range": 64, "style": "infura"},
    "range-limited (stated cap)": {"fault": "limit", "max_range": 200, "style": "range"},
    "range-limited (too wide)": {"fault": "limit", "max_range": 300, "style": "too_wide"},
    "result-limited": {"fault": "limit", "max_results": 1},
}

#: Faults that make C's replies useless, and the outcome they are counted under.
FAILING = {
    "down": "transport_error",
    "hanging": "timeout",
    "503": "http_error",
    "429": "http_error",
    "garbage": "malformed",
    "truncated": "malformed",
    "huge": "malformed",
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_one_faulty_provider_changes_nothing(
    case: str, paid_chain: Dict[str, Any], providers: Tuple[ChaosServer, ...]
) -> None:
    """Provider C misbehaves throughout: every payment is found once, nothing else, to the safe head."""
    a, b, c = providers
    c.set_fault(**FAULTS[case])
    reader = scanner(paid_chain, providers)
    found, checkpoint = scan_all(paid_chain, reader)
    assert found == expected(paid_chain)
    assert checkpoint == paid_chain["anvil"].block_number() - reader.confirmations
    assert not a.traffic()["faulted"] and not b.traffic()["faulted"]
    name = c.url.split("//")[1]
    metrics = reader.metrics
    if case in ("fabricated log", "dropped log", "altered value"):
        assert metrics.value("rpc_provider_disagreements_total", provider=name) >= 1
    if case == "lagging 50 blocks":
        assert metrics.value("rpc_provider_head_outliers_total", provider=name) >= 1
    if case.startswith("range-limited") or case == "result-limited":
        assert metrics.value("rpc_log_range_splits_total", provider=name) >= 1
    if case in FAILING:
        outcome = FAILING[case]
        assert metrics.value("rpc_requests_total", provider=name, outcome=outcome) >= 1
        breaker = reader.breakers[name]
        assert breaker.state is BreakerState.OPEN or breaker.consecutive_failures >= 1
        assert metrics.value("rpc_circuit_breaker_state", provider=name) == breaker.state.value
    assert metrics.value("rpc_quorum_failures_total", check="logs") == 0


def test_fabricated_payment_is_seen_but_never_accepted(
    paid_chain: Dict[str, Any], providers: Tuple[ChaosServer, ...]
) -> None:
    """The lie reaches the reader (C's replies carry it) and the quorum refuses it."""
    _, _, c = providers
    c.set_fault("fabricate", methods=["eth_getLogs"], value=10**30)
    reader = scanner(paid_chain, providers)
    found, _ = scan_all(paid_chain, reader)
    assert found == expected(paid_chain)
    assert any("contradict the quorum" in line for line in reader.logs)


def test_every_provider_range_limited_still_finds_everything(
    paid_chain: Dict[str, Any], providers: Tuple[ChaosServer, ...]
) -> None:
    """All three refuse wide ranges in different words: the chunks shrink for all and still tile the range."""
    for proxy, style, limit in zip(providers, ("alchemy", "range", "too_wide"), (120, 250, 90)):
        proxy.set_fault("limit", max_range=limit, style=style)
    reader = scanner(paid_chain, providers)
    found, _ = scan_all(paid_chain, reader)
    assert found == expected(paid_chain)
    for proxy, limit in zip(providers, (120, 250, 90)):
        assert max(proxy.traffic()["get_logs_spans"]) <= MAX_LOG_RANGE


def test_two_of_three_down_settles_nothing_then_everything(
    paid_chain: Dict[str, Any], providers: Tuple[ChaosServer, ...]
) -> None:
    """Below quorum nothing moves and a failure is counted; once the providers are back, the
    breakers' cool-down ends and the same reader settles every payment."""
    _, b, c = providers
    b.set_fault("down")
    c.set_fault("status", status=503)
    reader = scanner(paid_chain, providers)
    start = paid_chain["start"] - 1
    for _ in range(3):  # three periods: no head quorum, the checkpoint stays
        found, checkpoint = scan_all(paid_chain, reader)
        assert (found, checkpoint) == ([], start)
    assert reader.metrics.value("rpc_quorum_failures_total", check="head") == 3
    assert reader.metrics.value("rpc_quorum_checks_total", check="head") == 3
    b.clear()
    c.clear()
    found, _ = scan_all(paid_chain, reader)
    assert found == []  # breakers still open: not asked before the cool-down ends
    reader.clock.advance(COOLDOWN)
    found, checkpoint = scan_all(paid_chain, reader)
    assert found == expected(paid_chain)
    assert checkpoint == paid_chain["anvil"].block_number() - reader.confirmations


def test_logs_quorum_lost_keeps_the_checkpoint(
    paid_chain: Dict[str, Any], providers: Tuple[ChaosServer, ...]
) -> None:
    """Heads agree but two providers fail every eth_getLogs: no range is settled, the failure is counted."""
    _, b, c = providers
    b.set_fault("garbage", methods=["eth_getLogs"])
    c.set_fault("truncate", methods=["eth_getLogs"])
    reader = scanner(paid_chain, providers)
    found, checkpoint = scan_all(paid_chain, reader)
    assert (found, checkpoint) == ([], paid_chain["start"] - 1)
    assert reader.metrics.value("rpc_quorum_failures_total", check="logs") >= 1
    assert any("provider failed" in line and "not JSON" in line for line in reader.logs)
