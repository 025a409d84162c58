"""Deploy and move a test ERC-20 on a dev chain, to produce real ``Transfer`` logs.

The bytecode is the "ERC20 generic token" (``contracts/test/ERC20Token.sol``,
18 decimals) shipped in open-autonomy's ``valory/erc20`` package, so nothing is
compiled here. Its ``mint(address,uint256)`` is open to any caller. Its ABI
file also lists functions the bytecode lacks (``owner``, ``minter``,
``permit``...; calls revert), so only the standard ERC-20 calls and ``mint``
are used.

Senders must be unlocked dev accounts (``eth_accounts``); any other address is
impersonated through anvil (and given gas money) for the one transaction.
"""

from __future__ import annotations

import json
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from web3 import Web3
from web3.types import TxReceipt

import autonomy

#: Located by file path, not by importing ``packages.valory...``: a repo-local
#: ``packages/`` on ``sys.path`` would shadow the installed one.
ARTIFACT_CANDIDATES = (
    Path(sysconfig.get_paths()["purelib"]) / "packages/valory/contracts/erc20/build/ERC20.json",
    Path(autonomy.__file__).parent / "data/contracts/erc20/build/ERC20.json",  # identical copy
)
TRANSFER_TOPIC = Web3.to_hex(Web3.keccak(text="Transfer(address,address,uint256)"))
DECIMALS = 18
#: What ``deploy_token`` mints to every dev account (1,000,000 tokens).
DEFAULT_FUNDING = 1_000_000 * 10**DECIMALS


@dataclass(frozen=True)
class TransferResult:
    """Where a transfer's ``Transfer`` log landed (what the service will see)."""

    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int
    token: str
    sender: str
    to: str
    amount: int
    receipt: Any

    def __iter__(self):  # allows ``tx_hash, block, idx = transfer(...)``
        """Unpack as (tx_hash, block_number, log_index)."""
        return iter((self.tx_hash, self.block_number, self.log_index))


@lru_cache(maxsize=1)
def load_artifact() -> Tuple[List[Dict[str, Any]], str]:
    """Return (abi, creation bytecode) from the shipped hardhat artifact."""
    path = next((p for p in ARTIFACT_CANDIDATES if p.exists()), None)
    if path is None:
        raise FileNotFoundError(f"ERC20.json not found in {ARTIFACT_CANDIDATES}")
    data = json.loads(path.read_text())
    return data["abi"], data["bytecode"]


def token_contract(w3: Web3, token: str):
    """A web3 contract object bound to a deployed token."""
    abi, _ = load_artifact()
    return w3.eth.contract(address=Web3.to_checksum_address(token), abi=abi)


def deploy_token(
    w3: Web3,
    deployer: Optional[str] = None,
    fund: Optional[Iterable[str]] = None,
    amount: int = DEFAULT_FUNDING,
) -> str:
    """Deploy a fresh token and mint ``amount`` to each account in ``fund``.

    ``deployer`` defaults to the first dev account and ``fund`` to all dev
    accounts, so any of them can pay invoices right away. Returns the
    checksummed address.
    """
    abi, bytecode = load_artifact()
    deployer = Web3.to_checksum_address(deployer or w3.eth.accounts[0])
    tx_hash = w3.eth.contract(abi=abi, bytecode=bytecode).constructor().transact({"from": deployer})
    receipt = _wait(w3, tx_hash)
    address = receipt["contractAddress"]
    accounts = list(w3.eth.accounts) if fund is None else list(fund)
    # send every mint first, then wait: with interval mining they share a block
    hashes = [
        _send(w3, token_contract(w3, address).functions.mint(Web3.to_checksum_address(a), amount), deployer)
        for a in accounts
    ]
    for h in hashes:
        _wait(w3, h)
    return address


def mint(w3: Web3, token: str, to: str, amount: int, sender: Optional[str] = None) -> TxReceipt:
    """Mint ``amount`` base units to ``to`` (emits a Transfer from the zero address)."""
    call = token_contract(w3, token).functions.mint(Web3.to_checksum_address(to), amount)
    return _wait(w3, _send(w3, call, sender or w3.eth.accounts[0]))


def balance_of(w3: Web3, token: str, account: str) -> int:
    """Token balance in base units."""
    return token_contract(w3, token).functions.balanceOf(Web3.to_checksum_address(account)).call()


def transfer(w3: Web3, token: str, sender: str, to: str, amount: int) -> TransferResult:
    """Send ``amount`` base units from ``sender`` to ``to`` and wait for the receipt.

    Raises ``ValueError`` rather than minting behind the caller's back when the
    sender lacks funds: a hidden mint would add a Transfer log tests did not ask for.
    """
    have = balance_of(w3, token, sender)
    if have < amount:
        raise ValueError(f"{sender} holds {have} < {amount}; mint() first")
    call = token_contract(w3, token).functions.transfer(Web3.to_checksum_address(to), amount)
    receipt = _wait(w3, _send(w3, call, sender))
    logs = [
        log
        for log in receipt["logs"]
        if log["address"].lower() == token.lower() and _hex(log["topics"][0]) == TRANSFER_TOPIC
    ]
    if len(logs) != 1:
        raise RuntimeError(f"expected one Transfer log, got {len(logs)}: {receipt}")
    log = logs[0]
    return TransferResult(
        tx_hash=_hex(receipt["transactionHash"]),
        block_number=receipt["blockNumber"],
        block_hash=_hex(receipt["blockHash"]),
        log_index=log["logIndex"],
        token=Web3.to_checksum_address(token),
        sender=Web3.to_checksum_address(sender),
        to=Web3.to_checksum_address(to),
        amount=amount,
        receipt=receipt,
    )


# ---------------------------------------------------------------------- helpers
def _hex(value: Any) -> str:
    """0x-prefixed lowercase hex of HexBytes/bytes/str."""
    text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value)
    return "0x" + text.removeprefix("0x").lower()


def _send(w3: Web3, call: Any, sender: str) -> Any:
    """Send a contract call from ``sender``, impersonating it if it is not a dev account."""
    sender = Web3.to_checksum_address(sender)
    if sender in w3.eth.accounts:
        return call.transact({"from": sender})
    w3.provider.make_request("anvil_setBalance", [sender, hex(10**20)])
    w3.provider.make_request("anvil_impersonateAccount", [sender])
    try:
        return call.transact({"from": sender})
    finally:
        w3.provider.make_request("anvil_stopImpersonatingAccount", [sender])


def _wait(w3: Web3, tx_hash: Any, timeout: float = 60.0) -> TxReceipt:
    """Wait for a receipt and fail loudly on a reverted transaction."""
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.05)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {_hex(tx_hash)} reverted: {receipt}")
    return receipt
