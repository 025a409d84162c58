"""The settlement proof: what each agent signs so a merchant can check a webhook without trusting the keeper.

Why: the Standard Webhooks signature proves only that someone holding the shared
secret sent the request; a single keeper holds it. The proof adds `threshold`
ECDSA signatures by the agents' own keys over the settled payment (EIP-712, see
README "Settlement proof"), so no minority of agents can make a merchant
accept a payment the service did not agree on.

How an agent signs (checked in `tests/test_core_attestation.py`): the skill asks
the decision maker for `get_signature(settlement_digest(...), is_deprecated_mode=True)`.
open-aea's `EthereumCrypto.sign_message(message, is_deprecated_mode=True)` signs a
32-byte message as a raw hash (`Account.unsafe_sign_hash`, no prefix) and returns
`0x` + r ‖ s ‖ v with v in {27, 28}: exactly the header form, and it recovers with
`Account.recover_message(encode_typed_data(full_message=...), signature=...)`.
Without deprecated mode the same call prefixes EIP-191's "\\x19Ethereum Signed
Message:\\n32" and the signature recovers to some other address: never use it here.

Pure: eth-abi, eth-account and eth-utils only; the framework is never imported.
"""

import json
import re
from typing import Any, Dict, Mapping, Sequence, Tuple

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_hex_address, keccak, to_checksum_address


DOMAIN_NAME = "SettleProof"
DOMAIN_VERSION = "1"
SIGNATURES_HEADER = "settleproof-signatures"
SIGNER_SET_HEADER = "settleproof-signer-set"

#: The primary type, field by field; the README's `Settlement(...)` string is this list.
SETTLEMENT_FIELDS = (
    ("eventId", "string"), ("invoiceUuid", "string"), ("txHash", "bytes32"), ("logIndex", "uint256"),
    ("blockNumber", "uint256"), ("blockHash", "bytes32"), ("token", "address"), ("from", "address"),
    ("to", "address"), ("amount", "uint256"), ("confirmations", "uint256"), ("bodyHash", "bytes32"),
    ("signerSet", "bytes32"),
)
DOMAIN_FIELDS = (("name", "string"), ("version", "string"), ("chainId", "uint256"))

_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}\Z")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")
_UINT256_LIMIT = 2**256


class AttestationError(ValueError):
    """A value that cannot be part of a settlement proof; the message names it."""


def _uint(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _UINT256_LIMIT:
        raise AttestationError(f"{name} must be an integer in [0, 2**256), not {value!r:.80}")
    return value


def _bytes32(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _BYTES32.match(value):
        raise AttestationError(f"{name} must be 0x + 64 hex digits, not {value!r:.80}")
    return value.lower()


def _address(name: str, value: Any) -> str:
    if not isinstance(value, str) or not is_hex_address(value):
        raise AttestationError(f"{name} must be a 20-byte hex address, not {value!r:.80}")
    return to_checksum_address(value)


def sorted_signers(signers: Sequence[str]) -> Tuple[str, ...]:
    """Checksummed, distinct, ascending by address as a number."""
    checksummed = [_address("signer", signer) for signer in signers]
    if len(set(checksummed)) != len(checksummed):
        raise AttestationError("the signer set names an address twice")
    return tuple(sorted(checksummed, key=lambda a: int(a, 16)))


def signer_set_digest(threshold: int, signers: Sequence[str]) -> str:
    """`0x` + keccak256(abi.encode(uint256 threshold, address[] signers)), the signers sorted ascending."""
    members = sorted_signers(signers)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= len(members):
        raise AttestationError(f"threshold must be in [1, {len(members)}], not {threshold!r}")
    return "0x" + keccak(abi_encode(["uint256", "address[]"], [threshold, list(members)])).hex()


def signer_document(chain_id: int, threshold: int, signers: Sequence[str]) -> Dict[str, Any]:
    """The document a merchant pins (`settleproof signers`, `D/signers.json`)."""
    return {
        "chain_id": _uint("chain_id", chain_id),
        "threshold": threshold,
        "signers": list(sorted_signers(signers)),
        "signer_set": signer_set_digest(threshold, signers),
    }


def _event_values(body: bytes) -> Dict[str, Any]:
    """The signed values of a webhook body, each checked for its EIP-712 type."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise AttestationError(f"the body is not JSON ({type(error).__name__})") from None
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        raise AttestationError("the body must be an object with a `data` object")
    for key, value in (("id", event.get("id")), ("invoice_uuid", data.get("invoice_uuid"))):
        if not isinstance(value, str):
            raise AttestationError(f"`{key}` must be a string, not {value!r:.80}")
    amount = data.get("amount")
    # 78 digits hold any uint256; checked first, as int() refuses strings over 4,300 digits.
    canonical = isinstance(amount, str) and len(amount) <= 78 and _DECIMAL.match(amount)
    if not canonical or int(amount) >= _UINT256_LIMIT:
        raise AttestationError(f"`amount` must be a decimal string below 2**256, not {amount!r:.80}")
    return {
        "eventId": event["id"],
        "invoiceUuid": data["invoice_uuid"],
        "txHash": _bytes32("`tx_hash`", data.get("tx_hash")),
        "logIndex": _uint("`log_index`", data.get("log_index")),
        "blockNumber": _uint("`block_number`", data.get("block_number")),
        "blockHash": _bytes32("`block_hash`", data.get("block_hash")),
        "token": _address("`token`", data.get("token")),
        "from": _address("`from`", data.get("from")),
        "to": _address("`to`", data.get("to")),
        "amount": int(amount),
        "confirmations": _uint("`confirmations`", data.get("confirmations")),
    }


def settlement_message(body: bytes, chain_id: int, signer_set: str) -> Dict[str, Any]:
    """The EIP-712 `full_message` of one webhook body, for `encode_typed_data(full_message=...)`."""
    values = _event_values(body)
    values["bodyHash"] = "0x" + keccak(body).hex()
    values["signerSet"] = _bytes32("signer_set", signer_set)
    return {
        "types": {
            "EIP712Domain": [{"name": n, "type": t} for n, t in DOMAIN_FIELDS],
            "Settlement": [{"name": n, "type": t} for n, t in SETTLEMENT_FIELDS],
        },
        "primaryType": "Settlement",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": _uint("chain_id", chain_id)},
        "message": values,
    }


def settlement_digest(body: bytes, chain_id: int, signer_set: str) -> bytes:
    """The 32-byte EIP-712 hash an agent signs: keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct)."""
    signable = encode_typed_data(full_message=settlement_message(body, chain_id, signer_set))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def parse_signature(signature: Any) -> str:
    """One signature in header form (`0x` + 130 hex, v in {27, 28}), lower-cased, or AttestationError."""
    if not isinstance(signature, str) or not _SIGNATURE.match(signature):
        raise AttestationError(f"a signature must be 0x + 130 hex digits, not {signature!r:.140}")
    if int(signature[-2:], 16) not in (27, 28):
        raise AttestationError(f"a signature's v must be 27 or 28, not {int(signature[-2:], 16)}")
    return signature.lower()


def recover_signer(body: bytes, chain_id: int, signer_set: str, signature: str) -> str:
    """The checksummed address whose key made `signature` over this body's settlement."""
    signable = encode_typed_data(full_message=settlement_message(body, chain_id, signer_set))
    return str(Account.recover_message(signable, signature=parse_signature(signature)))


def signatures_header(signatures_by_signer: Mapping[str, str]) -> str:
    """The `settleproof-signatures` value: the signatures sorted by signer address (as a number)."""
    signers = sorted_signers(list(signatures_by_signer))
    by_address = {to_checksum_address(a): s for a, s in signatures_by_signer.items()}
    return " ".join(parse_signature(by_address[signer]) for signer in signers)


def parse_signatures_header(value: str) -> Tuple[str, ...]:
    """The signatures of a `settleproof-signatures` value, in header order; AttestationError if malformed."""
    if not isinstance(value, str) or not value.strip():
        raise AttestationError("the signatures header is empty")
    return tuple(parse_signature(token) for token in value.split())
