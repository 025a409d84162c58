"""The `make demo-chaos` scorecard: what the merchant received, judged against the chain's truth.

Pure functions, the same for every column of the table, so the baseline and
SettleProof are scored by one rule. The truth is the contract's matching rule
(README) applied to the `Transfer` logs really on chain; the receipts are
every request the merchant accepted, verified or not.

Its invoice and transfer records restate the contract's formats rather than
importing the skill's: the judge must not share code with what it judges.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple


@dataclass(frozen=True)
class Invoice:
    """An invoice's terms (README), amounts in base units."""

    uuid: str
    token: str
    receiver: str
    amount: int
    payer: Optional[str] = None
    created_block: Optional[int] = None


@dataclass(frozen=True)
class Transfer:
    """A `Transfer` log that is on chain."""

    tx_hash: str
    block_number: int
    log_index: int
    token: str
    sender: str
    to: str
    value: int


@dataclass(frozen=True)
class Receipt:
    """One request the merchant accepted: the event id and what it claims, and whether it verified."""

    id: Optional[str]
    invoice_uuid: Optional[str]
    tx_hash: Optional[str]
    verified: bool


@dataclass(frozen=True)
class Score:
    """One column of the table."""

    invoices_paid: int
    settled_correctly: int
    false_settlements: int
    lost_events: int
    duplicate_new_ids: int
    unverifiable: int


#: Row labels of the table, in order, for each `Score` field.
ROWS = {
    "invoices_paid": "invoices paid (on chain)",
    "settled_correctly": "settled correctly",
    "false_settlements": "false settlements",
    "lost_events": "lost events",
    "duplicate_new_ids": "duplicate deliveries under new ids",
    "unverifiable": "unverifiable deliveries",
}


def pays(log: Transfer, invoice: Invoice) -> bool:
    """Whether the log meets the invoice's terms (token, receiver, amount, payer, created block)."""
    return (
        log.token.lower() == invoice.token.lower()
        and log.to.lower() == invoice.receiver.lower()
        and log.value >= invoice.amount
        and (invoice.payer is None or log.sender.lower() == invoice.payer.lower())
        and (invoice.created_block is None or log.block_number > invoice.created_block)
    )


def true_settlements(invoices: Iterable[Invoice], logs: Iterable[Transfer]) -> Dict[str, str]:
    """Invoice uuid -> the tx that settles it: earliest log first, one-to-one, ties by invoice uuid."""
    open_invoices = sorted(invoices, key=lambda invoice: invoice.uuid)
    settled: Dict[str, str] = {}
    for log in sorted(logs, key=lambda log: (log.block_number, log.log_index)):
        match = next((inv for inv in open_invoices if inv.uuid not in settled and pays(log, inv)), None)
        if match is not None:
            settled[match.uuid] = log.tx_hash.lower()
    return settled


def score(receipts: Iterable[Receipt], truth: Mapping[str, str]) -> Score:
    """The table's numbers; a payment is an (invoice, tx) pair, and retries under one id count once."""
    ids: Dict[Tuple[str, str], Set[str]] = {}
    unverifiable = 0
    for number, receipt in enumerate(receipts):
        unverifiable += not receipt.verified
        if receipt.invoice_uuid is None or receipt.tx_hash is None:
            continue
        key = (receipt.invoice_uuid, receipt.tx_hash.lower())
        ids.setdefault(key, set()).add(receipt.id or f"(no id #{number})")
    true_pairs = {(uuid, tx.lower()) for uuid, tx in truth.items()}
    correct = len(true_pairs & set(ids))
    return Score(
        invoices_paid=len(true_pairs),
        settled_correctly=correct,
        false_settlements=len(set(ids) - true_pairs),
        lost_events=len(true_pairs) - correct,
        duplicate_new_ids=sum(len(seen) - 1 for seen in ids.values()),
        unverifiable=unverifiable,
    )


def receipts_from_report(report: Mapping[str, Any]) -> List[Receipt]:
    """Receipts from `Merchant.report()`: verified events, accepted unverified requests, rejections."""
    receipts = [Receipt(e["id"], e["invoice_uuid"], e["tx_hash"], True) for e in report["events"]]
    receipts += [Receipt(u["id"], u["invoice_uuid"], u["tx_hash"], False) for u in report.get("unverified", [])]
    receipts += [Receipt(r["webhook_id"], None, None, False) for r in report["rejections"]]
    return receipts


def format_table(columns: Mapping[str, Score]) -> str:
    """One row per metric, one column per run."""
    names = list(columns)
    width = max(len(label) for label in ROWS.values())
    lines = [f"{'':{width}}  " + "  ".join(f"{name:>12}" for name in names)]
    for field in fields(Score):
        values = "  ".join(f"{getattr(columns[name], field.name):>12}" for name in names)
        lines.append(f"{ROWS[field.name]:{width}}  {values}")
    return "\n".join(lines)
