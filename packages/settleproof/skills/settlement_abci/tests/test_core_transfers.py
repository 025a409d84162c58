"""JSON-RPC requests with numeric bounds, and strict parsing of provider replies."""

import json
import re
from typing import Any, Dict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.tests.strategies import (
    RECEIVERS,
    TOKENS,
    any_addresses,
    chain_logs,
    examples,
    hashes,
    log_entry,
    make_transfer,
    rpc_error,
    rpc_reply,
    transfers,
    uint256,
)
from packages.settleproof.skills.settlement_abci.webhook import iso_utc
from packages.settleproof.skills.settlement_abci.transfers import (
    MAX_TIMESTAMP,
    TRANSFER_TOPIC,
    MalformedReply,
    RpcError,
    Transfer,
    address_topic,
    get_logs_request,
    parse_block,
    parse_block_number,
    parse_logs,
    rpc_request,
    transfer_filter,
)


HEX_QUANTITY = re.compile(r"0x(0|[1-9a-f][0-9a-f]*)")
LOG = make_transfer(block_number=105, log_index=3, value=12_345)


def parse_one(entry: Dict[str, Any], from_block: int = 100, to_block: int = 110):
    """Parse a reply holding a single log entry."""
    return parse_logs(rpc_reply([entry]), from_block, to_block, [TOKENS[0]])


# --- requests ---------------------------------------------------------------------


@examples(100)
@given(
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=0, max_value=2**20),
    st.lists(st.sampled_from(TOKENS + (TOKENS[0].upper().replace("0X", "0x"),)), min_size=1),
    st.none() | st.lists(any_addresses, max_size=4),
)
def test_get_logs_request_has_numeric_hex_bounds(from_block, span, tokens, receivers):
    """Never "latest"/"earliest": both bounds are canonical hex quantities of the given numbers."""
    body = json.loads(get_logs_request(7, from_block, from_block + span, tokens, receivers))
    assert body["jsonrpc"] == "2.0" and body["id"] == 7 and body["method"] == "eth_getLogs"
    (log_filter,) = body["params"]
    assert HEX_QUANTITY.fullmatch(log_filter["fromBlock"])
    assert HEX_QUANTITY.fullmatch(log_filter["toBlock"])
    assert int(log_filter["fromBlock"], 16) == from_block
    assert int(log_filter["toBlock"], 16) == from_block + span
    assert log_filter["address"] == sorted(t.lower() for t in tokens)
    assert log_filter["topics"][:2] == [TRANSFER_TOPIC, None]
    if receivers is None:
        assert len(log_filter["topics"]) == 2
    else:
        assert log_filter["topics"][2] == sorted({address_topic(r) for r in receivers})
        for topic in log_filter["topics"][2]:
            assert re.fullmatch(r"0x0{24}[0-9a-f]{40}", topic)


def test_rpc_request_is_compact_json_rpc():
    """A plain JSON-RPC 2.0 body."""
    assert json.loads(rpc_request(3, "eth_blockNumber", [])) == {
        "jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber", "params": [],
    }


# --- eth_getLogs round trip -------------------------------------------------------


@examples(80)
@given(chain_logs(min_block=100, max_block=110, values=uint256), st.randoms(use_true_random=False))
def test_real_looking_reply_round_trips(logs, rnd):
    """A node's reply (any order, any uint256 value, upper-case hex) parses back to the logs."""
    entries = [log_entry(t) for t in logs]
    for entry in entries:
        if rnd.random() < 0.3:
            entry["transactionHash"] = "0x" + entry["transactionHash"][2:].upper()
            entry["address"] = "0x" + entry["address"][2:].upper()
    rnd.shuffle(entries)
    assert parse_logs(rpc_reply(entries), 100, 110, list(TOKENS)) == sorted(logs)


def test_a_recorded_geth_style_reply_parses():
    """A reply as a node returns it, with every field of a real log."""
    reply = (
        b'{"jsonrpc":"2.0","id":1,"result":[{"address":"0x5FbDB2315678afecb367f032d93F642f64180aa3",'
        b'"topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",'
        b'"0x000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266",'
        b'"0x00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8"],'
        b'"data":"0x00000000000000000000000000000000000000000000000000000000000f4240",'
        b'"blockHash":"0x9b3c1b2f0d6b1a8d4b2b4c7b2e9f3c8e1a6d5f4e3c2b1a09f8e7d6c5b4a39281",'
        b'"blockNumber":"0x1b4","blockTimestamp":"0x6553f100",'
        b'"transactionHash":"0x2a8f3c0b9d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a",'
        b'"transactionIndex":"0x0","logIndex":"0x0","removed":false}]}'
    )
    (log,) = parse_logs(reply, 400, 500, ["0x5fbdb2315678afecb367f032d93f642f64180aa3"])
    assert log == Transfer(
        block_number=436,
        log_index=0,
        tx_hash="0x2a8f3c0b9d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a",
        block_hash="0x9b3c1b2f0d6b1a8d4b2b4c7b2e9f3c8e1a6d5f4e3c2b1a09f8e7d6c5b4a39281",
        token="0x5fbdb2315678afecb367f032d93f642f64180aa3",
        sender="0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        receiver="0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
        value=1_000_000,
    )


@examples(50)
@given(transfers(values=uint256))
def test_transfer_json_round_trip(transfer):
    """The synchronized-state encoding keeps uint256 values exact."""
    data = json.loads(json.dumps(transfer.to_json()))
    assert isinstance(data["value"], str)
    assert Transfer.from_json(data) == transfer


def test_removed_logs_are_dropped():
    """A log removed by a reorg is not a payment."""
    reply = rpc_reply([log_entry(LOG, removed=True), log_entry(make_transfer())])
    assert parse_logs(reply, 100, 110, [TOKENS[0]]) == [make_transfer()]
    assert parse_one(log_entry(LOG, removed=True)) == []


# --- malformed replies ------------------------------------------------------------

MALFORMED_REPLIES = {
    "not JSON": (b"<html>502 Bad Gateway</html>", "not JSON"),
    "truncated JSON": (rpc_reply([log_entry(LOG)])[:-20], "not JSON"),
    "invalid UTF-8": (b'{"jsonrpc":"2.0","result":"\xff"}', "not JSON"),
    "not JSON-RPC": (b'{"result": []}', "JSON-RPC 2.0"),
    "a JSON array": (b"[]", "JSON-RPC 2.0"),
    "JSON-RPC error": (rpc_error(-32000, "header not found"), "header not found"),
    "too many results": (
        rpc_error(-32005, "query returned more than 10000 results"),
        "-32005: query returned more than 10000 results",
    ),
    "missing result": (b'{"jsonrpc":"2.0","id":1}', "without 'result'"),
    "null result": (rpc_reply(None), "not a list"),
    "entry not an object": (rpc_reply(["0x1"]), "not an object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_REPLIES))
def test_malformed_reply_is_refused_with_a_useful_message(case):
    """Every reply that is not an honest answer raises MalformedReply saying why."""
    reply, message = MALFORMED_REPLIES[case]
    with pytest.raises(MalformedReply, match=re.escape(message)):
        parse_logs(reply, 100, 110, [TOKENS[0]])


MALFORMED_LOGS = {
    "two topics": ({"topics": log_entry(LOG)["topics"][:2]}, "exactly 3 topics"),
    "four topics": ({"topics": log_entry(LOG)["topics"] + ["0x" + "00" * 32]}, "exactly 3 topics"),
    "not Transfer": ({"topics": ["0x" + "ab" * 32] + log_entry(LOG)["topics"][1:]}, "topic 0"),
    "dirty address topic": ({"topics": log_entry(LOG)["topics"][:2] + ["0x" + "11" * 32]}, "padding"),
    "short topic": ({"topics": log_entry(LOG)["topics"][:2] + [RECEIVERS[0]]}, "field 'topics'"),
    "other token": ({"address": TOKENS[1]}, f"log of {TOKENS[1]}"),
    "bad address": ({"address": "0x1234"}, "field 'address'"),
    "block before range": ({"blockNumber": hex(99)}, "block 99, outside 100..110"),
    "block after range": ({"blockNumber": hex(111)}, "block 111, outside 100..110"),
    "short tx hash": ({"transactionHash": "0x" + "ab" * 31}, "field 'transactionHash'"),
    "long block hash": ({"blockHash": "0x" + "ab" * 33}, "field 'blockHash'"),
    "pending log": ({"transactionHash": None}, "field 'transactionHash'"),
    "decimal block number": ({"blockNumber": "105"}, "field 'blockNumber'"),
    "non-hex block number": ({"blockNumber": "0xzz"}, "field 'blockNumber'"),
    "integer log index": ({"logIndex": 3}, "field 'logIndex'"),
    "empty log index": ({"logIndex": "0x"}, "field 'logIndex'"),
    "missing log index": ({"logIndex": None}, "field 'logIndex'"),
    "two-word data": ({"data": "0x" + "00" * 64}, "32-byte word"),
    "empty data": ({"data": "0x"}, "32-byte word"),
    "non-hex data": ({"data": "0x" + "zz" * 32}, "field 'data'"),
    "trailing newline in hash": ({"transactionHash": LOG.tx_hash + "\n"}, "field 'transactionHash'"),
    "trailing newline in number": ({"blockNumber": hex(105) + "\n"}, "field 'blockNumber'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_LOGS))
def test_malformed_log_entry_is_refused_naming_the_problem(case):
    """One bad field in one log makes the whole reply untrusted, and the message says which."""
    overrides, message = MALFORMED_LOGS[case]
    assert parse_one(log_entry(LOG)) == [LOG]
    with pytest.raises(MalformedReply, match=re.escape(message)):
        parse_one(log_entry(LOG, **overrides))


def test_two_logs_at_the_same_position_are_refused():
    """A provider cannot report two different logs at one (block, log index)."""
    twin = make_transfer(block_number=LOG.block_number, log_index=LOG.log_index, value=1)
    with pytest.raises(MalformedReply, match="share a"):
        parse_logs(rpc_reply([log_entry(LOG), log_entry(twin)]), 100, 110, [TOKENS[0]])


@examples(50)
@given(st.integers(min_value=0, max_value=2**64), hashes, st.integers(min_value=0, max_value=MAX_TIMESTAMP))
def test_block_replies(number, block_hash, timestamp):
    """eth_blockNumber and eth_getBlockByNumber replies, and the block asked for only."""
    assert parse_block_number(rpc_reply(hex(number))) == number
    block = {"number": hex(number), "hash": block_hash, "timestamp": hex(timestamp)}
    assert parse_block(rpc_reply(block), number) == (block_hash, timestamp)
    with pytest.raises(MalformedReply, match="returned for"):
        parse_block(rpc_reply(block), number + 1)


def test_block_reply_malformations():
    """Missing block, bad head, bad hash and bad timestamp are each refused."""
    good = {"number": "0x64", "hash": "0x" + "ab" * 32, "timestamp": "0x6553f100"}
    with pytest.raises(MalformedReply, match="block 100 not found"):
        parse_block(rpc_reply(None), 100)
    with pytest.raises(MalformedReply, match="field 'hash'"):
        parse_block(rpc_reply({**good, "hash": "0xab"}), 100)
    with pytest.raises(MalformedReply, match="field 'timestamp'"):
        parse_block(rpc_reply({**good, "timestamp": 1700000000}), 100)
    with pytest.raises(MalformedReply, match="after the year 9999"):  # iso_utc could not write it
        parse_block(rpc_reply({**good, "timestamp": hex(MAX_TIMESTAMP + 1)}), 100)
    assert iso_utc(MAX_TIMESTAMP) == "9999-12-31T23:59:59Z"
    with pytest.raises(MalformedReply, match="field 'result'"):
        parse_block_number(rpc_reply(100))
    with pytest.raises(MalformedReply, match="-32603"):
        parse_block_number(rpc_error(-32603, "internal error"))


# --- what the reader relies on ----------------------------------------------------


def test_json_rpc_errors_keep_code_message_and_data():
    """A range refusal must reach the chunker whole: code, message and the range Infura suggests."""
    reply = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "query returned more than 10000 results",
                                               "data": {"from": "0x64", "to": "0x95"}}}
    ).encode()
    with pytest.raises(RpcError) as caught:
        parse_logs(reply, 100, 110, [TOKENS[0]])
    assert (caught.value.code, caught.value.data) == (-32005, {"from": "0x64", "to": "0x95"})
    assert caught.value.message == "query returned more than 10000 results"
    assert isinstance(caught.value, MalformedReply)


def test_reply_must_answer_the_request_id():
    """A reply to another request (a confused proxy, a replayed cache) is refused."""
    assert parse_block_number(rpc_reply("0x10", request_id=7), request_id=7) == 16
    with pytest.raises(MalformedReply, match="reply id 8 for request id 7"):
        parse_block_number(rpc_reply("0x10", request_id=8), request_id=7)
    with pytest.raises(MalformedReply, match="for request id 3"):
        parse_logs(rpc_reply([], request_id=4), 100, 110, [TOKENS[0]], request_id=3)


@pytest.mark.parametrize(
    "entries, message",
    [
        ([log_entry(LOG, removed="false")], "field 'removed'"),
        ([log_entry(LOG, removed=None)], "field 'removed'"),
        ([log_entry(LOG), log_entry(make_transfer(block_number=105, log_index=4), blockHash="0x" + "ee" * 32)],
         "different block hashes"),
        ([log_entry(make_transfer(block_number=105, receiver=RECEIVERS[2]))], "which was not asked for"),
    ],
    ids=["removed as a string", "removed as null", "one block, two hashes", "receiver not asked for"],
)
def test_more_malformations(entries, message):
    """Replies an honest node never sends for our filter."""
    with pytest.raises(MalformedReply, match=re.escape(message)):
        parse_logs(rpc_reply(entries), 100, 110, [TOKENS[0]], receivers=RECEIVERS[:2])


def test_filter_refuses_an_empty_range():
    """Bounds are always explicit numbers, and never backwards."""
    assert transfer_filter(5, 5, [TOKENS[0]])["fromBlock"] == "0x5"
    with pytest.raises(ValueError):
        transfer_filter(6, 5, [TOKENS[0]])
