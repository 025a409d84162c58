"""Invoice matching: one log pays at most one invoice, one invoice is paid by at most one log.

Logs are taken in chain order (block, log index); each goes to the eligible
open invoice with the smallest uuid. The result depends only on the sets of
invoices and logs, never on the order they arrive in.
"""

from collections import defaultdict
from dataclasses import dataclass
from typing import AbstractSet, Dict, Iterable, List, Tuple

from packages.settleproof.skills.settlement_abci.invoices import Invoice
from packages.settleproof.skills.settlement_abci.transfers import Transfer


@dataclass(frozen=True, order=True)
class Settlement:
    """An invoice paid by a log."""

    invoice: Invoice
    transfer: Transfer

    @property
    def key(self) -> str:
        """The idempotency key, also the webhook id: `invoice_uuid:tx_hash`."""
        return f"{self.invoice.uuid}:{self.transfer.tx_hash}"


def pays(invoice: Invoice, transfer: Transfer) -> bool:
    """Whether a log satisfies an invoice's terms."""
    return (
        transfer.token == invoice.token
        and transfer.receiver == invoice.receiver
        and transfer.value >= invoice.amount
        and (invoice.payer is None or transfer.sender == invoice.payer)
        and (invoice.created_block is None or transfer.block_number > invoice.created_block)
    )


def match(
    invoices: Iterable[Invoice],
    transfers: Iterable[Transfer],
    settled_invoices: AbstractSet[str] = frozenset(),
) -> List[Settlement]:
    """Pair logs with invoices; invoices already settled (by uuid) are never paired again."""
    open_by_destination: Dict[Tuple[str, str], List[Invoice]] = defaultdict(list)
    for invoice in sorted(set(invoices)):
        if invoice.uuid not in settled_invoices:
            open_by_destination[(invoice.token, invoice.receiver)].append(invoice)
    settlements = []
    for transfer in sorted(set(transfers)):
        candidates = open_by_destination.get((transfer.token, transfer.receiver), [])
        for position, invoice in enumerate(candidates):
            if pays(invoice, transfer):
                settlements.append(Settlement(invoice, transfer))
                del candidates[position]
                break
    return settlements
