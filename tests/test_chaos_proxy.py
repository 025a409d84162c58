"""The chaos JSON-RPC proxy itself: each fault does what it says, and it is steerable over HTTP."""

import json
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, Tuple

import pytest
from eth_account import Account
from web3 import Web3

from settleproof.anvil import Anvil
from settleproof.chaos import TRANSFER_TOPIC, ChaosServer, Fault
from settleproof.erc20 import deploy_token, transfer


def call(url: str, method: str, params: Any = None, timeout: float = 10.0) -> Tuple[int, bytes]:
    """POST one JSON-RPC request: (status, body); HTTP errors are returned, not raised."""
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def result(url: str, method: str, params: Any = None) -> Any:
    """The `result` of a call (fails the test on anything else)."""
    status, body = call(url, method, params)
    assert status == 200, body
    return json.loads(body)["result"]


def control(url: str, **command: Any) -> Tuple[int, Dict[str, Any]]:
    """POST /_chaos."""
    request = urllib.request.Request(f"{url}/_chaos", json.dumps(command).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def paid(anvil: Anvil) -> Dict[str, Any]:
    """One payment to a fresh shop on a token of this module, and the filter that finds it."""
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
    token = deploy_token(w3, fund=[w3.eth.accounts[1]])
    shop = Account.create().address
    done = transfer(w3, token, w3.eth.accounts[1], shop, 4242)
    anvil.mine(3)
    log_filter = {
        "fromBlock": hex(done.block_number - 1),
        "toBlock": hex(done.block_number + 1),
        "address": [token.lower()],
        "topics": [TRANSFER_TOPIC, None, ["0x" + "0" * 24 + shop[2:].lower()]],
    }
    return {"transfer": done, "filter": log_filter, "shop": shop}


@pytest.fixture
def proxy(anvil: Anvil) -> Iterator[ChaosServer]:
    """One proxy in front of the session chain."""
    with ChaosServer(anvil.url) as server:
        yield server


def test_honest_by_default_and_counting(proxy: ChaosServer, anvil: Anvil, paid: Dict[str, Any]) -> None:
    """No fault: the upstream's answers, byte for byte in content; traffic is counted."""
    assert int(result(proxy.url, "eth_blockNumber"), 16) == anvil.block_number()
    logs = result(proxy.url, "eth_getLogs", [paid["filter"]])
    assert [int(log["data"], 16) for log in logs] == [4242]
    traffic = proxy.traffic()
    assert traffic["requests"] == {"eth_blockNumber": 1, "eth_getLogs": 1}
    assert traffic["get_logs_spans"] == [3] and traffic["bytes_out"] > 0


def test_down_refuses_connections_and_comes_back_on_the_same_port(proxy: ChaosServer) -> None:
    """`down` closes the RPC port (connection refused); the control port still answers and restores it."""
    url = proxy.url
    assert control(proxy.control_url, fault="down") == (200, {"ok": True, "fault": Fault("down").__dict__})
    with pytest.raises(urllib.error.URLError) as refused:
        call(url, "eth_blockNumber", timeout=2)
    assert isinstance(refused.value.reason, ConnectionRefusedError)
    assert control(proxy.control_url, fault="none")[0] == 200
    assert proxy.url == url and result(url, "eth_chainId") == "0x7a69"


def test_hang_holds_the_reply_until_the_fault_is_cleared(proxy: ChaosServer) -> None:
    """`hang` never answers by itself; clearing releases the waiting request."""
    proxy.set_fault("hang")
    with pytest.raises(TimeoutError):
        call(proxy.url, "eth_chainId", timeout=0.3)
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(call(proxy.url, "eth_chainId", timeout=10)))
    waiter.start()
    proxy.wait_for_requests("eth_chainId", 2, timeout=10)
    proxy.clear()
    waiter.join(timeout=10)
    assert answers and answers[0][0] == 200


@pytest.mark.parametrize(
    "fault, check",
    [
        ({"fault": "status", "status": 429, "retry_after": "2"}, lambda s, b: s == 429),
        ({"fault": "garbage"}, lambda s, b: s == 200 and not b.startswith(b"{")),
        ({"fault": "truncate"}, lambda s, b: s == 200 and b.startswith(b"{") and not b.rstrip().endswith(b"}")),
        ({"fault": "huge", "size": 3_000_000}, lambda s, b: len(b) > 3_000_000 and json.loads(b)["result"]),
    ],
    ids=["429", "garbage", "truncate", "huge"],
)
def test_transport_and_format_faults(proxy: ChaosServer, fault: Dict[str, Any], check: Any) -> None:
    """Each returns what a broken provider returns."""
    proxy.set_fault(**fault)
    status, body = call(proxy.url, "eth_blockNumber")
    assert check(status, body)


def test_lag_rewrites_the_head_and_hides_newer_logs_and_blocks(proxy: ChaosServer, anvil: Anvil, paid: Dict[str, Any]) -> None:
    """A node `blocks` behind: its head, its logs and its blocks stop there."""
    head = anvil.block_number()
    behind = head - paid["transfer"].block_number + 1  # the payment's block is just past the lagged head
    proxy.set_fault("lag", blocks=behind)
    assert int(result(proxy.url, "eth_blockNumber"), 16) == head - behind
    assert result(proxy.url, "eth_getLogs", [paid["filter"]]) == []
    assert result(proxy.url, "eth_getBlockByNumber", [hex(paid["transfer"].block_number), False]) is None
    assert result(proxy.url, "eth_getBlockByNumber", [hex(head - behind), False]) is not None


def test_lies_about_logs(proxy: ChaosServer, paid: Dict[str, Any]) -> None:
    """fabricate adds a well-formed payment to the shop asked for; drop and alter change the real one."""
    proxy.set_fault("fabricate", value=10**30)
    logs = result(proxy.url, "eth_getLogs", [paid["filter"]])
    fake = logs[-1]
    assert len(logs) == 2 and int(fake["data"], 16) == 10**30
    assert fake["topics"][2].endswith(paid["shop"][2:].lower())
    block = result(proxy.url, "eth_getBlockByNumber", [fake["blockNumber"], False])
    assert fake["blockHash"] == block["hash"]  # only a quorum can tell it is fake
    proxy.set_fault("drop")
    assert result(proxy.url, "eth_getLogs", [paid["filter"]]) == []
    proxy.set_fault("alter")
    assert int(result(proxy.url, "eth_getLogs", [paid["filter"]])[0]["data"], 16) == 4243


@pytest.mark.parametrize(
    "style, code, words",
    [
        ("alchemy", -32602, "this block range should work: [0x"),
        ("infura", -32005, "query returned more than 10000 results"),
        ("range", -32000, "exceed maximum block range: 2"),
        ("too_wide", -32000, "block range is too wide"),
    ],
)
def test_limits_answer_like_real_providers(proxy: ChaosServer, paid: Dict[str, Any], style: str, code: int, words: str) -> None:
    """Over the limit: the provider's own error; within it: the real answer."""
    proxy.set_fault("limit", max_range=2, style=style)
    status, body = call(proxy.url, "eth_getLogs", [paid["filter"]])
    error = json.loads(body)["error"]
    assert status == 200 and error["code"] == code and words in error["message"]
    narrow = {**paid["filter"], "fromBlock": hex(paid["transfer"].block_number), "toBlock": hex(paid["transfer"].block_number)}
    assert len(result(proxy.url, "eth_getLogs", [narrow])) == 1


def test_control_over_http_count_and_methods(proxy: ChaosServer) -> None:
    """`count` limits a fault to that many requests, `methods` to some methods; bad commands are 400."""
    assert control(proxy.url, fault="status", status=503, count=1, methods=["eth_blockNumber"])[0] == 200
    assert call(proxy.url, "eth_chainId")[0] == 200
    assert call(proxy.url, "eth_blockNumber")[0] == 503
    assert call(proxy.url, "eth_blockNumber")[0] == 200
    assert control(proxy.url, fault="explode")[0] == 400
    assert control(proxy.url, fault="limit")[0] == 400
    assert control(proxy.url, fault="delay", secs=1)[0] == 400
    with urllib.request.urlopen(f"{proxy.control_url}/_chaos", timeout=10) as response:  # nosec B310
        state = json.loads(response.read())
    assert state["fault"]["fault"] == "status" and state["traffic"]["faulted"] == 1
