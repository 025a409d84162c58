"""The settlement proof's pure core: digests and signatures against eth-account and open-aea, real keys.

The vectors are computed a second way here, from the README's type strings with
eth-abi (hashStruct and domain separator by hand), so a drift of the module from
the contract shows even if eth-account's encoder would accept both.
"""

import json
import re
from dataclasses import replace
from typing import Any, Dict, List

import pytest
from aea_ledger_ethereum import EthereumCrypto
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci import attestation
from packages.settleproof.skills.settlement_abci.attestation import AttestationError
from packages.settleproof.skills.settlement_abci.matching import Settlement
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    any_addresses,
    examples,
    invoices,
    make_invoice,
    make_transfer,
    transfers,
    uint256,
)
from packages.settleproof.skills.settlement_abci.webhook import build_event


#: The README's primary type, verbatim.
SETTLEMENT_TYPE = (
    "Settlement(string eventId,string invoiceUuid,bytes32 txHash,uint256 logIndex,uint256 blockNumber,"
    "bytes32 blockHash,address token,address from,address to,uint256 amount,uint256 confirmations,"
    "bytes32 bodyHash,bytes32 signerSet)"
)
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId)"
KEYS = [Account.create() for _ in range(3)]  # real keys; the fourth agent signs through open-aea
CRYPTO = EthereumCrypto()
MEMBERS = [k.address for k in KEYS] + [CRYPTO.address]
CHAIN_ID = 31337
SIGNER_SET = attestation.signer_set_digest(3, MEMBERS)


def body_of(settlement: Settlement, confirmations: int = 12) -> bytes:
    """The exact bytes the agent POSTs for `settlement`."""
    return build_event(settlement, 1_700_000_000, confirmations).body.encode()


BODY = body_of(Settlement(make_invoice(), make_transfer(value=10**24, log_index=3)))


def by_hand(body: bytes, chain_id: int, signer_set: str) -> bytes:
    """The EIP-712 hash from the contract's words, with eth-abi only."""
    event = json.loads(body)
    data = event["data"]
    struct = keccak(abi_encode(
        ["bytes32", "bytes32", "bytes32", "bytes32", "uint256", "uint256", "bytes32", "address", "address",
         "address", "uint256", "uint256", "bytes32", "bytes32"],
        [keccak(text=SETTLEMENT_TYPE), keccak(text=event["id"]), keccak(text=data["invoice_uuid"]),
         bytes.fromhex(data["tx_hash"][2:]), data["log_index"], data["block_number"],
         bytes.fromhex(data["block_hash"][2:]), data["token"], data["from"], data["to"], int(data["amount"]),
         data["confirmations"], keccak(body), bytes.fromhex(signer_set[2:])],
    ))
    domain = keccak(abi_encode(
        ["bytes32", "bytes32", "bytes32", "uint256"],
        [keccak(text=DOMAIN_TYPE), keccak(text="SettleProof"), keccak(text="1"), chain_id],
    ))
    return keccak(b"\x19\x01" + domain + struct)


def recover(body: bytes, signature: str, chain_id: int = CHAIN_ID, signer_set: str = SIGNER_SET) -> str:
    """The contract's own recovery call."""
    signable = encode_typed_data(full_message=attestation.settlement_message(body, chain_id, signer_set))
    return str(Account.recover_message(signable, signature=signature))


# --- signer set ------------------------------------------------------------------


def test_signer_set_digest_is_keccak_of_abi_encoded_threshold_and_sorted_signers() -> None:
    """keccak256(abi.encode(uint256, address[])) with the signers ascending as numbers."""
    ascending = sorted(MEMBERS, key=lambda a: int(a, 16))
    expected = "0x" + keccak(abi_encode(["uint256", "address[]"], [3, ascending])).hex()
    assert SIGNER_SET == expected
    assert re.fullmatch(r"0x[0-9a-f]{64}", SIGNER_SET)


@given(st.permutations(MEMBERS), st.lists(st.booleans(), min_size=4, max_size=4))
@examples(50)
def test_signer_set_digest_ignores_order_and_case(order: List[str], lower: List[bool]) -> None:
    """Any order and any letter case name the same set."""
    spelled = [a.lower() if low else a for a, low in zip(order, lower)]
    assert attestation.signer_set_digest(3, spelled) == SIGNER_SET


def test_a_changed_set_or_threshold_is_a_new_digest() -> None:
    """A merchant who pinned the digest sees any change of agents or threshold."""
    other = Account.create().address
    assert attestation.signer_set_digest(4, MEMBERS) != SIGNER_SET
    assert attestation.signer_set_digest(3, MEMBERS[:3] + [other]) != SIGNER_SET
    assert attestation.signer_set_digest(3, MEMBERS + [other]) != SIGNER_SET


@pytest.mark.parametrize("threshold, signers, reason", [
    (0, MEMBERS, "threshold"), (5, MEMBERS, "threshold"), (True, MEMBERS, "threshold"),
    (2, MEMBERS[:2] + [MEMBERS[0].lower()], "twice"), (1, ["0x12"], "address"), (1, [], "threshold"),
])
def test_bad_signer_sets_are_refused(threshold: Any, signers: List[str], reason: str) -> None:
    """Out-of-range thresholds, duplicates and non-addresses never become a digest."""
    with pytest.raises(AttestationError, match=reason):
        attestation.signer_set_digest(threshold, signers)


def test_signer_document_shape() -> None:
    """chain_id, threshold, checksummed signers ascending, and the digest."""
    document = attestation.signer_document(CHAIN_ID, 3, [m.lower() for m in reversed(MEMBERS)])
    assert document == {
        "chain_id": CHAIN_ID, "threshold": 3,
        "signers": sorted(MEMBERS, key=lambda a: int(a, 16)), "signer_set": SIGNER_SET,
    }
    assert json.loads(json.dumps(document)) == document


# --- the signed hash ---------------------------------------------------------------


def test_the_digest_is_the_contracts_eip712_hash() -> None:
    """Our digest equals the hand-made hash of the README's type strings."""
    assert attestation.settlement_digest(BODY, CHAIN_ID, SIGNER_SET) == by_hand(BODY, CHAIN_ID, SIGNER_SET)


@given(invoices(), transfers(values=uint256, min_block=0, max_block=2**40),
       st.integers(min_value=0, max_value=2**64), st.integers(min_value=1, max_value=2**64))
@examples(100)
def test_the_digest_matches_by_hand_for_any_settlement(invoice: Any, transfer: Any, confirmations: int,
                                                        chain_id: int) -> None:
    """Any agreed settlement: same hash as by hand."""
    body = body_of(Settlement(invoice, transfer), confirmations)
    assert attestation.settlement_digest(body, chain_id, SIGNER_SET) == by_hand(body, chain_id, SIGNER_SET)


def test_an_eth_account_key_signing_the_digest_recovers_with_the_contracts_call() -> None:
    """unsafe_sign_hash(digest) is the same signature as eth-account's own EIP-712 signing."""
    digest = attestation.settlement_digest(BODY, CHAIN_ID, SIGNER_SET)
    full = attestation.settlement_message(BODY, CHAIN_ID, SIGNER_SET)
    for key in KEYS:
        raw = key.unsafe_sign_hash(digest).signature.to_0x_hex()
        assert raw == Account.sign_typed_data(key.key, full_message=full).signature.to_0x_hex()  # RFC 6979
        assert recover(BODY, raw) == key.address


def test_open_aea_deprecated_mode_signs_the_raw_hash_in_header_form() -> None:
    """What the decision maker returns for get_signature(digest, is_deprecated_mode=True)."""
    digest = attestation.settlement_digest(BODY, CHAIN_ID, SIGNER_SET)
    signature = CRYPTO.sign_message(digest, is_deprecated_mode=True)
    assert attestation.parse_signature(signature) == signature  # 0x + 130 hex, v 27/28, lower case
    assert recover(BODY, signature) == CRYPTO.address
    assert attestation.recover_signer(BODY, CHAIN_ID, SIGNER_SET, signature) == CRYPTO.address
    own = Account.from_key(CRYPTO.private_key)
    full = attestation.settlement_message(BODY, CHAIN_ID, SIGNER_SET)
    assert signature == Account.sign_typed_data(own.key, full_message=full).signature.to_0x_hex()


def test_open_aea_without_deprecated_mode_adds_the_eip191_prefix_and_recovers_to_someone_else() -> None:
    """The pitfall the module's docstring warns about."""
    digest = attestation.settlement_digest(BODY, CHAIN_ID, SIGNER_SET)
    signature = CRYPTO.sign_message(digest, is_deprecated_mode=False)
    assert recover(BODY, signature) != CRYPTO.address


def test_open_aea_deprecated_mode_on_a_non_32_byte_message_is_prefixed_too() -> None:
    """Deprecated mode signs raw only 32 bytes: the full message must never be passed instead."""
    message = json.dumps(attestation.settlement_message(BODY, CHAIN_ID, SIGNER_SET)).encode()
    assert recover(BODY, CRYPTO.sign_message(message, is_deprecated_mode=True)) != CRYPTO.address


CHANGES: Dict[str, Any] = {
    "amount": lambda t: replace(t, value=t.value + 1),
    "receiver": lambda t: replace(t, receiver="0x" + "de" * 20),
    "log_index": lambda t: replace(t, log_index=t.log_index + 1),
    "block_hash": lambda t: replace(t, block_hash="0x" + "ee" * 32),
    "token": lambda t: replace(t, token="0x" + "a9" * 20),
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_a_signature_over_one_payment_recovers_to_an_outsider_on_another(field: str) -> None:
    """Change one signed value: the signature no longer names its signer."""
    transfer = make_transfer(value=10**24, log_index=3)
    changed = body_of(Settlement(make_invoice(), CHANGES[field](transfer)))
    signature = KEYS[0].unsafe_sign_hash(attestation.settlement_digest(BODY, CHAIN_ID, SIGNER_SET))
    assert recover(changed, signature.signature.to_0x_hex()) != KEYS[0].address


def test_chain_id_signer_set_and_every_body_byte_are_signed() -> None:
    """Another chain, another set or a one-byte change of the body: another hash."""
    digest = attestation.settlement_digest(BODY, CHAIN_ID, SIGNER_SET)
    assert attestation.settlement_digest(BODY, CHAIN_ID + 1, SIGNER_SET) != digest
    assert attestation.settlement_digest(BODY, CHAIN_ID, "0x" + "00" * 32) != digest
    spaced = BODY.replace(b'"data":', b'"data": ', 1)  # same values, other bytes
    assert attestation.settlement_digest(spaced, CHAIN_ID, SIGNER_SET) != digest


@pytest.mark.parametrize("key, value, reason", [
    ("amount", "007", "amount"), ("amount", "1.5", "amount"), ("amount", 1000, "amount"),
    ("amount", str(2**256), "amount"), ("amount", "9" * 5000, "amount"), ("tx_hash", "0x12", "tx_hash"),  # eth-account would pad this
    ("block_hash", "0x" + "g" * 64, "block_hash"), ("log_index", True, "log_index"),
    ("log_index", -1, "log_index"), ("block_number", "5", "block_number"), ("to", "0x1234", "to"),
    ("invoice_uuid", 7, "invoice_uuid"), ("confirmations", None, "confirmations"),
])
def test_malformed_fields_are_refused_naming_them(key: str, value: Any, reason: str) -> None:
    """Strict types: nothing is coerced (eth-account's encoder accepts "5" for a uint and pads short hex)."""
    event = json.loads(BODY)
    event["data"][key] = value
    with pytest.raises(AttestationError, match=reason):
        attestation.settlement_digest(json.dumps(event).encode(), CHAIN_ID, SIGNER_SET)


@pytest.mark.parametrize("body", [b"", b"[]", b'{"id":"x"}', b"\xff", b'{"id":1,"data":{}}', b"[" * 100_000])
def test_bodies_that_are_no_event_are_refused(body: bytes) -> None:
    """Not JSON, no `data`, or no string id."""
    with pytest.raises(AttestationError):
        attestation.settlement_message(body, CHAIN_ID, SIGNER_SET)


# --- the signatures header -----------------------------------------------------------


def test_header_is_sorted_by_address_as_a_number_not_as_checksummed_text() -> None:
    """0xa2.. < 0xB0.. as numbers, though "B" < "a" as text (0xa2A2.. and 0xB0B0.. checksummed)."""
    low, high = to_checksum_address("0x" + "a2" * 20), to_checksum_address("0x" + "b0" * 20)
    assert high < low  # text order of the checksummed forms is the other way round
    sig_low, sig_high = "0x" + "11" * 64 + "1b", "0x" + "22" * 64 + "1c"
    assert attestation.signatures_header({high: sig_high, low: sig_low}) == f"{sig_low} {sig_high}"


@given(st.dictionaries(any_addresses, st.binary(min_size=64, max_size=64), min_size=1, max_size=8),
       st.randoms())
@examples(100)
def test_header_order_and_round_trip(signers: Dict[str, bytes], rnd: Any) -> None:
    """Whatever the input order, the header lists signatures by signer ascending and parses back."""
    signatures = {a: "0x" + rs.hex() + rnd.choice(["1b", "1c"]) for a, rs in signers.items()}
    items = list(signatures.items())
    rnd.shuffle(items)
    header = attestation.signatures_header(dict(items))
    expected = [signatures[a] for a in sorted(signatures, key=lambda a: int(a, 16))]
    assert attestation.parse_signatures_header(header) == tuple(expected)


@pytest.mark.parametrize("value", [
    "", "  ", "0x" + "11" * 64, "0x" + "11" * 64 + "00", "0x" + "11" * 64 + "01", "11" * 65,
    "0x" + "zz" * 65, "0x" + "11" * 64 + "1b,0x" + "11" * 64 + "1b",
])
def test_malformed_signature_headers_are_refused(value: str) -> None:
    """Short, unprefixed, non-hex, v not 27/28, wrong separator, empty."""
    with pytest.raises(AttestationError):
        attestation.parse_signatures_header(value)


def test_header_refuses_a_signer_given_twice_in_other_case() -> None:
    """One signature per signer."""
    sig = "0x" + "11" * 64 + "1b"
    with pytest.raises(AttestationError, match="twice"):
        attestation.signatures_header({MEMBERS[0]: sig, MEMBERS[0].lower(): sig})
