"""Builders and hypothesis strategies shared by the `test_core_*` modules.

Small pools of addresses and blocks on purpose: collisions (same receiver,
same block, same uuid prefix) are where matching, quorum and agreement rules
actually get exercised.
"""

import base64
import json
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence

from hypothesis import settings
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.agreement import Payment
from packages.settleproof.skills.settlement_abci.invoices import Invoice
from packages.settleproof.skills.settlement_abci.transfers import TRANSFER_TOPIC, Transfer


def address(n: int) -> str:
    """A distinct, deterministic lower-case address."""
    return "0x" + f"{n:040x}"


def tx_hash(n: int) -> str:
    """A distinct, deterministic 32-byte hash."""
    return "0x" + f"{n:064x}"


TOKENS = (address(0xA1), address(0xA2))
RECEIVERS = (address(0xB1), address(0xB2), address(0xB3))
SENDERS = (address(0xC1), address(0xC2))
UUIDS = ("inv-a", "inv-b", "inv-c", "inv-d", "inv-e", "inv-f")
SECRET = "whsec_" + base64.b64encode(b"settleproof-test-secret-32bytes!").decode()
SECRET_NEXT = "whsec_" + base64.b64encode(b"settleproof-next-secret-32bytes!").decode()


def make_transfer(**fields: Any) -> Transfer:
    """A plausible `Transfer`; override any field."""
    block = fields.get("block_number", 100)
    index = fields.get("log_index", 0)
    defaults: Dict[str, Any] = {
        "block_number": block,
        "log_index": index,
        "tx_hash": tx_hash(block * 1000 + index),
        "block_hash": tx_hash(0xB10C0000 + block),
        "token": TOKENS[0],
        "sender": SENDERS[0],
        "receiver": RECEIVERS[0],
        "value": 1000,
    }
    defaults.update(fields)
    return Transfer(**defaults)


def make_invoice(**fields: Any) -> Invoice:
    """A plausible `Invoice`; override any field."""
    defaults: Dict[str, Any] = {
        "uuid": "inv-1",
        "token": TOKENS[0],
        "receiver": RECEIVERS[0],
        "amount": 1000,
        "payer": None,
        "created_block": None,
    }
    defaults.update(fields)
    return Invoice(**defaults)


def invoice_entry(**fields: Any) -> Dict[str, Any]:
    """A valid merchant-format invoice entry (JSON object); override any key."""
    entry: Dict[str, Any] = {
        "uuid": "inv-1",
        "token": TOKENS[0],
        "receiver": RECEIVERS[0],
        "amount": "1000",
        "payer": None,
        "created_block": None,
    }
    entry.update(fields)
    return entry


def log_entry(transfer: Transfer, **overrides: Any) -> Dict[str, Any]:
    """The `eth_getLogs` JSON object a node returns for `transfer`; override any key."""
    entry: Dict[str, Any] = {
        "address": transfer.token,
        "topics": [
            TRANSFER_TOPIC,
            "0x" + "0" * 24 + transfer.sender[2:],
            "0x" + "0" * 24 + transfer.receiver[2:],
        ],
        "data": "0x" + f"{transfer.value:064x}",
        "blockNumber": hex(transfer.block_number),
        "blockHash": transfer.block_hash,
        "transactionHash": transfer.tx_hash,
        "transactionIndex": "0x0",
        "logIndex": hex(transfer.log_index),
        "removed": False,
    }
    entry.update(overrides)
    return entry


def rpc_reply(result: Any, request_id: int = 1) -> bytes:
    """A successful JSON-RPC 2.0 reply."""
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode()


def rpc_error(code: int, message: str, request_id: int = 1) -> bytes:
    """A JSON-RPC 2.0 error reply."""
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    ).encode()


def valid_env(**overrides: Optional[str]) -> Dict[str, Optional[str]]:
    """A complete, valid set of `SETTLEPROOF_*` values; override (or None out) any."""
    env: Dict[str, Optional[str]] = {
        "SETTLEPROOF_RPC_ENDPOINTS": "http://rpc-a:8545,https://rpc-b.example/v1?key=1",
        "SETTLEPROOF_TOKEN_ADDRESS": TOKENS[0],
        "SETTLEPROOF_INVOICES_URL": "http://merchant:8080/invoices?status=open",
        "SETTLEPROOF_WEBHOOK_URL": "https://merchant.example/hooks/settleproof",
        "SETTLEPROOF_WEBHOOK_SECRET": SECRET,
    }
    env.update(overrides)
    return env


def examples(n: int = 100) -> settings:
    """Hypothesis settings for these pure functions: bounded runtime, no deadline flakiness."""
    return settings(max_examples=n, deadline=None)


# --- strategies -----------------------------------------------------------------

hashes = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
any_addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint256 = st.integers(min_value=0, max_value=2**256 - 1)


@st.composite
def transfers(
    draw: st.DrawFn,
    min_block: int = 100,
    max_block: int = 110,
    tokens: Sequence[str] = TOKENS,
    receivers: Sequence[str] = RECEIVERS,
    values: st.SearchStrategy[int] = st.integers(min_value=1, max_value=3000),
) -> Transfer:
    """A log from small pools, so that positions and destinations collide."""
    block = draw(st.integers(min_value=min_block, max_value=max_block))
    index = draw(st.integers(min_value=0, max_value=5))
    return Transfer(
        block_number=block,
        log_index=index,
        tx_hash=draw(st.sampled_from([tx_hash(block * 1000 + index), tx_hash(7)])),
        block_hash=tx_hash(0xB10C0000 + block),
        token=draw(st.sampled_from(tokens)),
        sender=draw(st.sampled_from(SENDERS)),
        receiver=draw(st.sampled_from(receivers)),
        value=draw(values),
    )


def chain_logs(max_size: int = 8, **kwargs: Any) -> st.SearchStrategy[List[Transfer]]:
    """Logs as one chain has them: each (block, log index) at most once."""
    return st.lists(transfers(**kwargs), max_size=max_size, unique_by=lambda t: t.position)


@st.composite
def invoices(
    draw: st.DrawFn,
    uuids: Sequence[str] = UUIDS,
    min_block: int = 95,
    max_block: int = 110,
) -> Invoice:
    """An invoice whose terms sometimes fit, sometimes miss, the logs of `transfers()`."""
    return Invoice(
        uuid=draw(st.sampled_from(uuids)),
        token=draw(st.sampled_from(TOKENS)),
        receiver=draw(st.sampled_from(RECEIVERS)),
        amount=draw(st.integers(min_value=1, max_value=3000)),
        payer=draw(st.none() | st.sampled_from(SENDERS)),
        created_block=draw(st.none() | st.integers(min_value=min_block, max_value=max_block)),
    )


def open_invoices(max_size: int = 6) -> st.SearchStrategy[List[Invoice]]:
    """Invoices as the merchant lists them: each uuid at most once."""
    return st.lists(invoices(), max_size=max_size, unique_by=lambda i: i.uuid)


def variant(transfer: Transfer, value: int) -> Transfer:
    """The same log position with a different value: what a lying provider returns."""
    return replace(transfer, value=value)


@st.composite
def provider_answers(
    draw: st.DrawFn, max_providers: int = 5
) -> Dict[str, Optional[List[Transfer]]]:
    """Per provider, the logs it returned, or None when it failed.

    Answers are drawn from a shared pool (plus a lying variant of one log) so
    that every count of identical answers between 0 and all providers occurs.
    """
    pool = draw(chain_logs(min_block=100, max_block=104, max_size=5))
    if pool:
        pool.append(variant(pool[0], pool[0].value + 1))
    names = [f"https://rpc-{n}" for n in range(draw(st.integers(1, max_providers)))]
    answers: Dict[str, Optional[List[Transfer]]] = {}
    for name in names:
        if draw(st.booleans()):
            answers[name] = None
        elif pool:
            answers[name] = draw(st.lists(st.sampled_from(pool), unique=True))
        else:
            answers[name] = []
    return answers


def payment(transfer: Transfer) -> Payment:
    """A payment with a timestamp derived from its block, as providers would agree."""
    return Payment(transfer, 1_700_000_000 + 12 * transfer.block_number)
