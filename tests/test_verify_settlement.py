"""The merchant's verifier against the agent's signing code, with real keys: what passes and what is refused.

The verifier is a second implementation of the contract (it never imports the
agent's packages); these tests sign with the agent's `attestation` module and
open-aea's EthereumCrypto, and check that the two agree and that every way a
request can fail is refused with the reason that names it.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import pytest
from aea_ledger_ethereum import EthereumCrypto
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci import attestation
from packages.settleproof.skills.settlement_abci.matching import Settlement
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    examples,
    invoices,
    make_invoice,
    make_transfer,
    transfers,
    uint256,
)
from packages.settleproof.skills.settlement_abci.webhook import build_event
from settleproof.verify_settlement import SettlementProofError, check_signer_document, verify_settlement


CHAIN_ID = 31337
KEYS = [Account.create() for _ in range(3)]
CRYPTO = EthereumCrypto()  # the fourth agent signs as the decision maker does
OUTSIDER = Account.create()
DOCUMENT = attestation.signer_document(CHAIN_ID, 3, [k.address for k in KEYS] + [CRYPTO.address])
SETTLEMENT = Settlement(make_invoice(uuid="inv-42"), make_transfer(value=10**24, log_index=3))


def body_of(settlement: Settlement = SETTLEMENT) -> bytes:
    """The exact bytes the agent POSTs."""
    return build_event(settlement, 1_700_000_000, 12).body.encode()


BODY = body_of()


def sign(body: bytes, signer: Any, document: Mapping[str, Any] = DOCUMENT, chain_id: int = CHAIN_ID) -> str:
    """One agent's signature: a real eth-account key, or open-aea in deprecated mode (the decision maker)."""
    digest = attestation.settlement_digest(body, chain_id, document["signer_set"])
    if isinstance(signer, EthereumCrypto):
        return signer.sign_message(digest, is_deprecated_mode=True)
    return str(signer.unsafe_sign_hash(digest).signature.to_0x_hex())


def headers(body: bytes = BODY, signers: Sequence[Any] = (KEYS[0], KEYS[1], CRYPTO),
            document: Mapping[str, Any] = DOCUMENT, **kwargs: Any) -> Dict[str, str]:
    """The proof headers as the keeper sends them."""
    header = attestation.signatures_header({s.address: sign(body, s, document, **kwargs) for s in signers})
    return {"settleproof-signatures": header, "settleproof-signer-set": document["signer_set"]}


def refused(body: bytes, given_headers: Mapping[str, str], match: str,
            pinned: Sequence[Mapping[str, Any]] = (DOCUMENT,)) -> None:
    """The request is refused with a message matching `match`."""
    with pytest.raises(SettlementProofError, match=match):
        verify_settlement(body, given_headers, list(pinned))


# --- accepted --------------------------------------------------------------------


def test_threshold_signatures_prove_the_settlement_and_the_event_is_returned() -> None:
    """3 of 4, including the open-aea-signed one; any header case; the event is the body."""
    event = verify_settlement(BODY, headers(), [DOCUMENT])
    assert event == json.loads(BODY)
    upper = {k.upper(): v for k, v in headers(signers=KEYS).items()}
    assert verify_settlement(BODY, upper, [DOCUMENT])["id"] == SETTLEMENT.key
    assert verify_settlement(BODY.decode(), headers(signers=KEYS + [CRYPTO]), [DOCUMENT])["id"] == SETTLEMENT.key


def test_a_rotation_pins_both_documents() -> None:
    """While agents change, requests under the old and the new set both verify; after, only the new."""
    new_keys = [KEYS[0], KEYS[1], Account.create()]
    new_document = attestation.signer_document(CHAIN_ID, 2, [k.address for k in new_keys])
    assert new_document["signer_set"] != DOCUMENT["signer_set"]
    old_request, new_request = headers(), headers(signers=new_keys[1:], document=new_document)
    for request in (old_request, new_request):
        verify_settlement(BODY, request, [DOCUMENT, new_document])
    refused(BODY, old_request, "is not pinned", pinned=[new_document])


@given(invoices(), transfers(values=uint256, min_block=0, max_block=2**40), st.integers(1, 2**64))
@examples(60)
def test_the_verifier_and_the_agent_agree_on_any_settlement(invoice: Any, transfer: Any, chain_id: int) -> None:
    """Two implementations of the contract, one hash: the agent's signature verifies."""
    body = body_of(Settlement(invoice, transfer))
    document = attestation.signer_document(chain_id, 1, [KEYS[0].address])
    assert verify_settlement(body, headers(body, [KEYS[0]], document, chain_id=chain_id), [document])


@given(st.lists(st.sampled_from(range(4)), min_size=1, max_size=6))
@examples(40)
def test_any_header_order_but_ascending_unique_members_is_refused(order: List[int]) -> None:
    """Exactly the sorted, duplicate-free lists of at least 3 members pass."""
    signers = [(KEYS + [CRYPTO])[i] for i in order]
    value = " ".join(sign(BODY, s) for s in signers)
    given_headers = {"settleproof-signatures": value, "settleproof-signer-set": DOCUMENT["signer_set"]}
    addresses = [int(s.address, 16) for s in signers]
    if addresses == sorted(set(addresses)) and len(addresses) >= 3:
        verify_settlement(BODY, given_headers, [DOCUMENT])
    else:
        refused(BODY, given_headers, "duplicate signer|not sorted|fewer than the threshold")


# --- refused: the proof ----------------------------------------------------------------


def test_fewer_than_threshold_is_refused() -> None:
    """Two honest signatures are not three."""
    refused(BODY, headers(signers=KEYS[:2]), "2 signatures, fewer than the threshold 3")


def test_a_duplicate_signer_is_refused() -> None:
    """The same agent twice counts once: refused outright."""
    given_headers = headers(signers=KEYS[:2])
    first = min(KEYS[:2], key=lambda k: int(k.address, 16))
    one = sign(BODY, first)
    given_headers["settleproof-signatures"] = f"{one} {one} " + given_headers["settleproof-signatures"].split()[1]
    refused(BODY, given_headers, f"duplicate signer {first.address} \\(signatures 1 and 2\\)")


def test_a_signer_outside_the_set_is_refused() -> None:
    """A valid signature by a key that is no member."""
    refused(BODY, headers(signers=[KEYS[0], KEYS[1], OUTSIDER]), f"recovers to {OUTSIDER.address}, outside")


def test_signatures_out_of_order_are_refused() -> None:
    """Sorted by signer address, ascending, as the contract says."""
    value = headers(signers=KEYS + [CRYPTO])["settleproof-signatures"]
    reversed_headers = {**headers(), "settleproof-signatures": " ".join(reversed(value.split()))}
    refused(BODY, reversed_headers, "not sorted by signer address")


@pytest.mark.parametrize("name", ["settleproof-signatures", "settleproof-signer-set"])
def test_a_missing_header_is_refused(name: str) -> None:
    """No proof, no settlement."""
    given_headers = headers()
    del given_headers[name]
    refused(BODY, given_headers, f"missing header {name}")


@pytest.mark.parametrize("value, match", [
    ("0x1234", "malformed signature 1: not 0x"),
    ("0x" + "11" * 64 + "01", "malformed signature 1: v is 1"),
    ("", "is empty"),
])
def test_a_malformed_signature_is_refused(value: str, match: str) -> None:
    """Shape and v are checked before anything is recovered."""
    refused(BODY, {**headers(), "settleproof-signatures": value}, match)


def test_an_unpinned_or_malformed_signer_set_is_refused() -> None:
    """The digest names a set the merchant never pinned, or is no digest."""
    other = attestation.signer_document(CHAIN_ID, 2, DOCUMENT["signers"])  # same agents, other threshold
    refused(BODY, headers(document=other), f"signer set {other['signer_set']} is not pinned")
    refused(BODY, {**headers(), "settleproof-signer-set": "0x1234"}, "malformed header settleproof-signer-set")


def test_a_header_claiming_the_pinned_set_over_signatures_for_another_is_refused() -> None:
    """Signatures made under another digest do not recover to members under the pinned one."""
    other = attestation.signer_document(CHAIN_ID, 2, DOCUMENT["signers"])
    given_headers = {**headers(document=other), "settleproof-signer-set": DOCUMENT["signer_set"]}
    refused(BODY, given_headers, "signature 1 recovers to 0x[0-9a-fA-F]{40}, outside the signer set")


# --- refused: a changed request ------------------------------------------------------------


def changed_body(**fields: Any) -> bytes:
    """The body of the same payment with one transfer field changed."""
    return body_of(replace(SETTLEMENT, transfer=replace(SETTLEMENT.transfer, **fields)))


@pytest.mark.parametrize("body", [
    pytest.param(changed_body(value=10**24 + 1), id="amount"),
    pytest.param(changed_body(receiver="0x" + "de" * 20), id="receiver"),
    pytest.param(changed_body(log_index=4), id="log_index"),
    pytest.param(changed_body(block_hash="0x" + "ee" * 32), id="block_hash"),
    pytest.param(BODY.replace(b"2023-11-14T22:13:20Z", b"2023-11-14T22:13:21Z"), id="timestamp_byte"),
    pytest.param(BODY.replace(b'"data":', b'"data": ', 1), id="whitespace_byte"),
])
def test_a_changed_field_or_body_byte_shows_as_outsiders(body: bytes) -> None:
    """The agents' signatures over the original, sent with a changed body."""
    assert body != BODY
    refused(body, headers(), "signature 1 recovers to 0x[0-9a-fA-F]{40}, outside the signer set")


def test_another_chain_id_shows_as_outsiders() -> None:
    """The signer set digest has no chain id: a document for chain 1 with the same agents pins the same
    digest, and signatures made for chain 31337 do not verify on it."""
    mainnet = {**DOCUMENT, "chain_id": 1}
    assert check_signer_document(mainnet)["signer_set"] == DOCUMENT["signer_set"]
    refused(BODY, headers(), "outside the signer set", pinned=[mainnet])
    verify_settlement(BODY, headers(chain_id=1), [mainnet])


@pytest.mark.parametrize("body, match", [
    (b"not json", "body: not JSON"),
    (b"\xff\xfe", "body: not JSON"),
    (b'{"id":"a","data":[]}', "body: must be an object"),
    (BODY.replace(b'"amount":"', b'"amount":"0'), "body: malformed `amount`"),
    (BODY.replace(b'"amount":"', b'"amount":"' + b"9" * 5000), "body: malformed `amount`"),
    (b"[" * 100_000, "body: nests deeper than"),
    (BODY.replace(b'"type":', b'"data":{},"type":'), "names a key twice"),
])
def test_a_body_that_is_no_event_is_refused(body: bytes, match: str) -> None:
    """The body is parsed strictly before anything is recovered."""
    refused(body, headers(), match)


def test_deep_nesting_is_refused_even_with_a_raised_recursion_limit() -> None:
    """py_ecc raises the recursion limit to 100,000, where json.loads of deep nesting kills the process:
    the verifier refuses it before parsing, at any limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        refused(b"[" * 100_000 + b"]" * 100_000, headers(), "body: nests deeper than")
    finally:
        sys.setrecursionlimit(limit)


# --- pinned documents ------------------------------------------------------------------


@pytest.mark.parametrize("change, match", [
    ({"signer_set": "0x" + "00" * 32}, "signer_set is not the digest"),
    ({"threshold": 5}, "threshold must be in"),
    ({"chain_id": "31337"}, "chain_id"),
    ({"signers": [s.lower() for s in DOCUMENT["signers"]]}, "checksummed"),
    ({"signers": list(reversed(DOCUMENT["signers"]))}, "sorted ascending"),
])
def test_a_broken_pinned_document_is_refused_naming_it(change: Dict[str, Any], match: str) -> None:
    """A corrupted copy of the document fails loudly instead of pinning something else."""
    broken = {**DOCUMENT, **change}
    refused(BODY, headers(), f"pinned signer document: .*{match}.*\\(document 2\\)", pinned=[DOCUMENT, broken])


def test_the_verifier_imports_eth_account_and_the_standard_library_only() -> None:
    """Merchants copy the file: it must not reach into our agent's packages or tooling."""
    import ast  # pylint: disable=import-outside-toplevel
    import settleproof.verify_settlement as module  # pylint: disable=import-outside-toplevel

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    # eth-abi and eth-utils are eth-account's own dependencies: `pip install eth-account` brings them.
    assert imported <= {"json", "re", "typing", "eth_abi", "eth_account", "eth_account.messages", "eth_utils"}
