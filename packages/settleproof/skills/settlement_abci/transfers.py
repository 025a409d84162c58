"""ERC-20 `Transfer` logs over JSON-RPC: requests with explicit bounds, replies checked field by field.

Transport lives in the behaviours; this module only builds request bodies and
turns reply bytes into typed values, raising `MalformedReply` on anything that
does not look like an honest answer to the question asked.
"""

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from eth_abi import decode as abi_decode


TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
HEX_RE = re.compile(r"^0x[0-9a-f]*$")
HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
ADDRESS_RE = re.compile(r"^0x[0-9a-f]{40}$")
#: The last second `datetime` can write (9999-12-31T23:59:59Z): block timestamps beyond it are
#: refused where they enter (RPC replies, observations), so `webhook.iso_utc` never raises.
MAX_TIMESTAMP = 253_402_300_799


class MalformedReply(ValueError):
    """A provider's reply is not a valid answer; the message says what was wrong."""


class RpcError(MalformedReply):
    """The provider answered with a JSON-RPC error object (kept whole: it may name a usable range)."""

    def __init__(self, code: Any, message: str, data: Any = None) -> None:
        """Keep the code, the message (first 300 characters) and the optional data."""
        self.code = code
        self.message = message[:300]
        self.data = data
        super().__init__(f"JSON-RPC error {code}: {message[:200]}")


@dataclass(frozen=True, order=True)
class Transfer:  # pylint: disable=too-many-instance-attributes
    """One decoded `Transfer` log; ordering puts the chain's order first."""

    block_number: int
    log_index: int
    tx_hash: str
    block_hash: str
    token: str
    sender: str
    receiver: str
    value: int

    @property
    def position(self) -> Tuple[int, int]:
        """Where the log sits in the chain."""
        return (self.block_number, self.log_index)

    def to_json(self) -> Dict[str, Any]:
        """A JSON-safe dict; the value as a decimal string so no reader loses precision."""
        data = asdict(self)
        data["value"] = str(self.value)
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Transfer":
        """Inverse of `to_json`."""
        return cls(**{**data, "value": int(data["value"])})


def address_topic(address: str) -> str:
    """An address left-padded to a 32-byte topic."""
    return "0x" + "0" * 24 + address.lower()[2:]


def rpc_request(request_id: int, method: str, params: Sequence[Any]) -> bytes:
    """A JSON-RPC 2.0 request body."""
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
    return json.dumps(body, separators=(",", ":")).encode()


def transfer_filter(
    from_block: int,
    to_block: int,
    tokens: Sequence[str],
    receivers: Optional[Iterable[str]] = None,
) -> Dict[str, Any]:
    """The `eth_getLogs` filter for `Transfer` of the given tokens, always with numeric bounds.

    Receivers filter topic 2 on the server when given; `None` asks for every receiver.
    """
    if to_block < from_block:
        raise ValueError(f"empty block range {from_block}..{to_block}")
    topics: List[Any] = [TRANSFER_TOPIC, None]
    if receivers is not None:
        topics.append(sorted(address_topic(r) for r in set(receivers)))
    return {
        "fromBlock": hex(from_block),
        "toBlock": hex(to_block),
        "address": sorted(t.lower() for t in tokens),
        "topics": topics,
    }


def get_logs_request(
    request_id: int,
    from_block: int,
    to_block: int,
    tokens: Sequence[str],
    receivers: Optional[Iterable[str]] = None,
) -> bytes:
    """`eth_getLogs` for `Transfer` of the given tokens (see `transfer_filter`)."""
    return rpc_request(
        request_id, "eth_getLogs", [transfer_filter(from_block, to_block, tokens, receivers)]
    )


def _result(reply: bytes, request_id: Optional[int] = None) -> Any:
    try:
        document = json.loads(reply)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedReply(f"not JSON ({error.__class__.__name__})") from None
    if not isinstance(document, dict) or document.get("jsonrpc") != "2.0":
        raise MalformedReply("not a JSON-RPC 2.0 object")
    if request_id is not None and document.get("id") != request_id:
        raise MalformedReply(f"reply id {str(document.get('id'))[:40]} for request id {request_id}")
    if "error" in document:
        error = document["error"]
        if isinstance(error, dict):
            raise RpcError(error.get("code"), str(error.get("message")), error.get("data"))
        raise RpcError(None, str(error))
    if "result" not in document:
        raise MalformedReply("JSON-RPC reply without 'result'")
    return document["result"]


def _quantity(value: Any, field: str) -> int:
    if not isinstance(value, str) or not HEX_RE.fullmatch(value) or value == "0x":
        raise MalformedReply(f"field '{field}': {str(value)[:80]!r} is not a hex quantity")
    return int(value, 16)


def _match(value: Any, pattern: "re.Pattern[str]", field: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value.lower()):
        raise MalformedReply(f"field '{field}': {str(value)[:80]!r} is malformed")
    return value.lower()


def parse_block_number(reply: bytes, request_id: Optional[int] = None) -> int:
    """The head reported by an `eth_blockNumber` reply."""
    return _quantity(_result(reply, request_id), "result")


def parse_block(reply: bytes, number: int, request_id: Optional[int] = None) -> Tuple[str, int]:
    """(hash, timestamp) of the block asked for from an `eth_getBlockByNumber` reply."""
    block = _result(reply, request_id)
    if not isinstance(block, dict):
        raise MalformedReply(f"block {number} not found")
    if _quantity(block.get("number"), "number") != number:
        raise MalformedReply(f"block {block.get('number')} returned for {number}")
    timestamp = _quantity(block.get("timestamp"), "timestamp")
    if timestamp > MAX_TIMESTAMP:
        raise MalformedReply(f"field 'timestamp': {timestamp} is after the year 9999")
    return _match(block.get("hash"), HASH_RE, "hash"), timestamp


def _parse_log(
    log: Any, from_block: int, to_block: int, tokens: Sequence[str]
) -> Optional[Transfer]:
    if not isinstance(log, dict):
        raise MalformedReply("a log entry is not an object")
    if log.get("removed", False) not in (True, False):
        raise MalformedReply(f"field 'removed': {str(log.get('removed'))[:20]!r} is not a boolean")
    if log.get("removed") is True:
        return None
    token = _match(log.get("address"), ADDRESS_RE, "address")
    if token not in tokens:
        raise MalformedReply(f"log of {token}, which was not asked for")
    block_number = _quantity(log.get("blockNumber"), "blockNumber")
    if not from_block <= block_number <= to_block:
        raise MalformedReply(f"log in block {block_number}, outside {from_block}..{to_block}")
    topics = log.get("topics")
    if not isinstance(topics, list) or len(topics) != 3:
        raise MalformedReply("a Transfer log needs exactly 3 topics")
    topics = [_match(t, HASH_RE, "topics") for t in topics]
    if topics[0] != TRANSFER_TOPIC:
        raise MalformedReply("a log's topic 0 is not Transfer")
    data = _match(log.get("data"), HEX_RE, "data")
    if len(data) != 66:
        raise MalformedReply("a Transfer log's data is not one 32-byte word")
    for topic in topics[1:]:
        if topic[2:26] != "0" * 24:
            raise MalformedReply("an address topic has non-zero padding")
    (value,) = abi_decode(["uint256"], bytes.fromhex(data[2:]))
    return Transfer(
        block_number=block_number,
        log_index=_quantity(log.get("logIndex"), "logIndex"),
        tx_hash=_match(log.get("transactionHash"), HASH_RE, "transactionHash"),
        block_hash=_match(log.get("blockHash"), HASH_RE, "blockHash"),
        token=token,
        sender="0x" + topics[1][26:],
        receiver="0x" + topics[2][26:],
        value=value,
    )


def parse_logs(  # pylint: disable=too-many-arguments
    reply: bytes,
    from_block: int,
    to_block: int,
    tokens: Sequence[str],
    receivers: Optional[Iterable[str]] = None,
    request_id: Optional[int] = None,
) -> List[Transfer]:
    """The `Transfer` logs of an `eth_getLogs` reply, in chain order; removed logs dropped.

    With `receivers`, a log to anyone else is refused: the request filtered on
    them, so an honest provider never returns it.
    """
    result = _result(reply, request_id)
    if not isinstance(result, list):
        raise MalformedReply("eth_getLogs result is not a list")
    lowered = [t.lower() for t in tokens]
    transfers = [_parse_log(log, from_block, to_block, lowered) for log in result]
    kept = sorted(t for t in transfers if t is not None)
    positions = [t.position for t in kept]
    if len(set(positions)) != len(positions):
        raise MalformedReply("two logs share a (block, log index)")
    if len({(t.block_number, t.block_hash) for t in kept}) != len({t.block_number for t in kept}):
        raise MalformedReply("two logs of one block name different block hashes")
    if receivers is not None:
        wanted = {r.lower() for r in receivers}
        for transfer in kept:
            if transfer.receiver not in wanted:
                raise MalformedReply(f"log to {transfer.receiver}, which was not asked for")
    return kept
