"""Check a SettleProof webhook's settlement proof: the merchant's side, in one file.

Why a separate file: a merchant should be able to copy it (or `pip install
settleproof` and import it) and check a request against the signer document it
pinned, without running or trusting our agent code. It needs eth-account only
(eth-abi and eth-utils come with it) and never imports the agent's packages: it
is a second, independent reading of the contract in README "Settlement proof".

    from settleproof.verify_settlement import SettlementProofError, verify_settlement

    event = verify_settlement(request_body_bytes, request_headers, [pinned_signer_document])

A request whose proof fails is not a settlement, whatever its Standard Webhooks
signature says. Any change to a signed value (amount, receiver, chain id, log
index, block hash, a body byte, ...) makes the signatures recover to addresses
outside the signer set, which is the error then reported.
"""

import json
import re
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_checksum_address, is_hex_address, keccak, to_checksum_address


SIGNATURES_HEADER = "settleproof-signatures"
SIGNER_SET_HEADER = "settleproof-signer-set"
SETTLEMENT_TYPE = [
    {"name": name, "type": kind}
    for name, kind in (
        ("eventId", "string"), ("invoiceUuid", "string"), ("txHash", "bytes32"), ("logIndex", "uint256"),
        ("blockNumber", "uint256"), ("blockHash", "bytes32"), ("token", "address"), ("from", "address"),
        ("to", "address"), ("amount", "uint256"), ("confirmations", "uint256"), ("bodyHash", "bytes32"),
        ("signerSet", "bytes32"),
    )
]
DOMAIN_TYPE = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
               {"name": "chainId", "type": "uint256"}]

_HASH = re.compile(r"0x[0-9a-fA-F]{64}\Z")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")


class SettlementProofError(ValueError):
    """The request is not a proven settlement; the message says what failed."""


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**256


def check_signer_document(document: Any) -> Dict[str, Any]:
    """A pinned signer document, checked whole (its digest recomputed); SettlementProofError if not."""
    if not isinstance(document, dict):
        raise SettlementProofError("a signer document must be a JSON object")
    chain_id, threshold, signers = document.get("chain_id"), document.get("threshold"), document.get("signers")
    if not _is_uint(chain_id):
        raise SettlementProofError(f"signer document: chain_id must be an integer, not {chain_id!r}")
    if not isinstance(signers, list) or not all(isinstance(s, str) and is_checksum_address(s) for s in signers):
        raise SettlementProofError("signer document: signers must be a list of checksummed addresses")
    numbers = [int(s, 16) for s in signers]
    if numbers != sorted(set(numbers)):
        raise SettlementProofError("signer document: signers must be distinct and sorted ascending")
    if not _is_uint(threshold) or not 1 <= threshold <= len(signers):
        raise SettlementProofError(f"signer document: threshold must be in [1, {len(signers)}], not {threshold!r}")
    digest = "0x" + keccak(abi_encode(["uint256", "address[]"], [threshold, signers])).hex()
    if str(document.get("signer_set", "")).lower() != digest:
        raise SettlementProofError(f"signer document: signer_set is not the digest of its signers ({digest})")
    return {"chain_id": chain_id, "threshold": threshold, "signers": list(signers), "signer_set": digest}


def _header(headers: Mapping[str, str], name: str) -> str:
    values = [value for key, value in headers.items() if key.lower() == name]
    if not values:
        raise SettlementProofError(f"missing header {name}")
    if len(values) > 1:
        raise SettlementProofError(f"header {name} given more than once")
    return str(values[0]).strip()


def _no_duplicate_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise SettlementProofError("body: an object names a key twice")
    return dict(pairs)


#: A SettleProof event nests 2 levels deep. Deeper JSON is refused before it is parsed: with a raised
#: recursion limit (py_ecc, which eth-account may import, sets 100,000) `json.loads` of deeply nested
#: text overflows the C stack and kills the process instead of raising RecursionError.
MAX_NESTING = 8
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _nesting(body: bytes) -> int:
    """How deep the body's arrays and objects nest (strings left out)."""
    depth = deepest = 0
    for byte in _STRINGS.sub(b"", body):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def _signed_values(body: bytes) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The body as an event and its EIP-712 values (without bodyHash and signerSet)."""
    if _nesting(body) > MAX_NESTING:
        raise SettlementProofError(f"body: nests deeper than {MAX_NESTING} levels")
    try:
        event = json.loads(body, object_pairs_hook=_no_duplicate_keys)
    except SettlementProofError:
        raise
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise SettlementProofError(f"body: not JSON ({type(error).__name__})") from None
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        raise SettlementProofError("body: must be an object with a `data` object")

    def field(key: str, ok: Any, holder: Dict[str, Any] = data) -> Any:
        if not ok(holder.get(key)):
            raise SettlementProofError(f"body: malformed `{key}`: {holder.get(key)!r:.80}")
        return holder[key]

    def is_hash(v: Any) -> bool:
        return isinstance(v, str) and bool(_HASH.match(v))

    def is_address(v: Any) -> bool:
        return isinstance(v, str) and is_hex_address(v)

    # 78 digits hold any uint256; the length check comes first (int() refuses over 4,300 digits).
    amount = field("amount", lambda v: isinstance(v, str) and len(v) <= 78 and bool(_DECIMAL.match(v))
                   and _is_uint(int(v)))
    values = {
        "eventId": field("id", lambda v: isinstance(v, str), event),
        "invoiceUuid": field("invoice_uuid", lambda v: isinstance(v, str)),
        "txHash": field("tx_hash", is_hash).lower(),
        "logIndex": field("log_index", _is_uint),
        "blockNumber": field("block_number", _is_uint),
        "blockHash": field("block_hash", is_hash).lower(),
        "token": to_checksum_address(field("token", is_address)),
        "from": to_checksum_address(field("from", is_address)),
        "to": to_checksum_address(field("to", is_address)),
        "amount": int(amount),
        "confirmations": field("confirmations", _is_uint),
    }
    return event, values


def _signatures(value: str) -> List[str]:
    tokens = value.split()
    if not tokens:
        raise SettlementProofError(f"header {SIGNATURES_HEADER} is empty")
    for index, token in enumerate(tokens, 1):
        if not _SIGNATURE.match(token):
            raise SettlementProofError(f"malformed signature {index}: not 0x + 130 hex digits")
        if int(token[-2:], 16) not in (27, 28):
            raise SettlementProofError(f"malformed signature {index}: v is {int(token[-2:], 16)}, not 27 or 28")
    return tokens


def verify_settlement(
    body: Union[bytes, str], headers: Mapping[str, str], signer_sets: Sequence[Mapping[str, Any]]
) -> Dict[str, Any]:
    """The event of a request whose settlement proof holds against one of the pinned signer documents.

    `body` is the exact request body (a str is taken as its UTF-8 bytes); `headers`
    any mapping of header names (any case) to values; `signer_sets` the pinned
    documents (several during a rotation of the agents). Raises SettlementProofError.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    pinned: Dict[str, Dict[str, Any]] = {}
    for number, pinned_document in enumerate(signer_sets, 1):
        try:
            checked = check_signer_document(pinned_document)
        except SettlementProofError as error:
            raise SettlementProofError(f"pinned {error} (document {number})") from None
        pinned[checked["signer_set"]] = checked
    signer_set = _header(headers, SIGNER_SET_HEADER).lower()
    if not _HASH.match(signer_set):
        raise SettlementProofError(f"malformed header {SIGNER_SET_HEADER}: not 0x + 64 hex digits")
    if signer_set not in pinned:
        raise SettlementProofError(f"signer set {signer_set} is not pinned (pinned: {', '.join(pinned) or 'none'})")
    document = pinned[signer_set]
    signatures = _signatures(_header(headers, SIGNATURES_HEADER))
    event, values = _signed_values(raw)
    values.update(bodyHash="0x" + keccak(raw).hex(), signerSet=signer_set)
    signable = encode_typed_data(full_message={
        "types": {"EIP712Domain": DOMAIN_TYPE, "Settlement": SETTLEMENT_TYPE},
        "primaryType": "Settlement",
        "domain": {"name": "SettleProof", "version": "1", "chainId": document["chain_id"]},
        "message": values,
    })
    members = set(document["signers"])
    seen: List[str] = []
    for index, signature in enumerate(signatures, 1):
        signer = Account.recover_message(signable, signature=signature)
        if signer not in members:
            raise SettlementProofError(
                f"signature {index} recovers to {signer}, outside the signer set: the request differs from "
                "what the agents signed (a field, a body byte or the chain id), or the signer is no member"
            )
        if signer in seen:
            raise SettlementProofError(f"duplicate signer {signer} (signatures {seen.index(signer) + 1} and {index})")
        if seen and int(signer, 16) < int(seen[-1], 16):
            raise SettlementProofError(f"signatures not sorted by signer address: {signer} after {seen[-1]}")
        seen.append(signer)
    if len(seen) < document["threshold"]:
        raise SettlementProofError(f"{len(seen)} signatures, fewer than the threshold {document['threshold']}")
    return event
