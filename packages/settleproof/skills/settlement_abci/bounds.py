"""Bounds on what a merchant's list and a token's logs can make an agent carry in its observation.

An observation travels in one consensus transaction, which the framework sends
hex-encoded in the request line of a Tendermint RPC call: Tendermint reads at
most 1 MiB of it (`max_header_bytes`), so a transaction holds about 520 kB, and
the other agents refuse larger or longer observations (`payload_checks`). An
honest agent must never build one that cannot be sent or is refused, whatever
the merchant lists and whatever the chain holds, so it keeps:

- invoices: the first `MAX_OPEN_INVOICES` of the watched ones by uuid, the order
  every agent shares, so agents reading the same list keep the same ones; the
  rest are not watched while the list stays over the bound (a payment to one of
  them meanwhile is not seen, as for an invoice listed after its payment);
- payments: only transfers that could pay one of those invoices (`Payable`, the
  terms `matching.pays` checks, so nothing matching could use is dropped); of
  those the first `MAX_PAYMENTS_PER_OBSERVATION` in chain order, whole blocks
  only: the range ends before the first block left out, so what is left out is
  read again next period, never skipped;
- the whole observation within `MAX_OBSERVATION_BYTES`, payments cut the same way.

At 1,000 invoices of the largest shape (330 bytes each) a 400 kB observation
still has room for about 190 payments of the largest shape, so the range always
moves on unless a single block holds more payable transfers than fit. No
framework import: unit and property tests drive these directly.
"""

from bisect import bisect_left
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from packages.settleproof.skills.settlement_abci.agreement import Observation
from packages.settleproof.skills.settlement_abci.invoices import Invoice
from packages.settleproof.skills.settlement_abci.transfers import Transfer


#: What one consensus transaction carries with room for payments (the README's `matching`
#: benchmark: about 1,000 payments with 1,000 open invoices fit); `payload_checks` accepts 20,000.
MAX_OPEN_INVOICES = 1_000
MAX_PAYMENTS_PER_OBSERVATION = 1_000
#: The observation's JSON: escaped into the framework's transaction (quotes, at most 10% more)
#: and hex-encoded (twice that), it stays under the 1 MiB Tendermint reads; `payload_checks` accepts 1 MiB.
MAX_OBSERVATION_BYTES = 400_000

# (token, receiver, payer or None) -> [(created_block or -1, amount)] sorted, and running minimum amounts
_Key = Tuple[str, str, Optional[str]]


def first_invoices(invoices: Sequence[Invoice], limit: int = MAX_OPEN_INVOICES) -> Tuple[Tuple[Invoice, ...], int]:
    """The first `limit` invoices by uuid, and how many were left out."""
    ordered = sorted(invoices)
    return tuple(ordered[:limit]), max(0, len(ordered) - limit)


class Payable:
    """Whether a transfer could pay one of `invoices` (`matching.pays` for at least one), in O(log n).

    A transfer pays an invoice when it goes to the invoice's token and receiver,
    comes from its payer (when it names one), is at least its amount and lies
    after its `created_block`. So, per (token, receiver, payer), the invoices are
    kept sorted by `created_block` with the smallest amount so far: a transfer
    could pay one iff some invoice created before its block asks no more than it carries.
    """

    def __init__(self, invoices: Sequence[Invoice]) -> None:
        """Index the invoices by destination and payer."""
        grouped: Dict[_Key, List[Tuple[int, int]]] = defaultdict(list)
        for invoice in invoices:
            created = -1 if invoice.created_block is None else invoice.created_block
            grouped[(invoice.token, invoice.receiver, invoice.payer)].append((created, invoice.amount))
        self._created: Dict[_Key, List[int]] = {}
        self._cheapest: Dict[_Key, List[int]] = {}
        for key, entries in grouped.items():
            entries.sort()
            cheapest: List[int] = []
            for _, amount in entries:
                cheapest.append(min(amount, cheapest[-1]) if cheapest else amount)
            self._created[key] = [created for created, _ in entries]
            self._cheapest[key] = cheapest

    def __call__(self, transfer: Transfer) -> bool:
        """Could `transfer` pay any of the invoices?"""
        for payer in (None, transfer.sender):
            key = (transfer.token, transfer.receiver, payer)
            created = self._created.get(key)
            if created is None:
                continue
            older = bisect_left(created, transfer.block_number)  # invoices created before its block
            if older and self._cheapest[key][older - 1] <= transfer.value:
                return True
        return False


def first_transfers(
    transfers: Sequence[Transfer], last: int, limit: int = MAX_PAYMENTS_PER_OBSERVATION
) -> Tuple[List[Transfer], int, int]:
    """At most `limit` transfers in chain order, whole blocks only: (kept, last block covered, left out).

    Over the bound, the range ends before the block of the first transfer left
    out, and that whole block goes: a block is observed completely or not at all.
    """
    ordered = sorted(transfers)
    if len(ordered) <= limit:
        return ordered, last, 0
    cut = ordered[limit].block_number
    kept = [t for t in ordered if t.block_number < cut]
    return kept, cut - 1, len(ordered) - len(kept)


def fit_observation(observation: Observation, max_bytes: int = MAX_OBSERVATION_BYTES) -> Tuple[Observation, int]:
    """The observation with its JSON within `max_bytes`, and how many payments were left out.

    Payments go by whole blocks from the end, and the range ends before the first
    block left out. Invoices are never cut here (`first_invoices` bounds them so
    that they fit with room to spare); an observation whose invoices alone do not
    fit comes back with no payment and its range ending before the first payment.
    """
    if len(observation.to_json()) <= max_bytes:
        return observation, 0
    blocks = sorted({p.transfer.block_number for p in observation.payments})
    if not blocks:
        return observation, 0

    def keeping(count: int) -> Observation:
        """Payments of the first `count` blocks only (count < len(blocks))."""
        end = blocks[count]
        payments = tuple(p for p in observation.payments if p.transfer.block_number < end)
        return Observation(observation.from_block, end - 1, payments, observation.invoices, observation.anchor_hash)

    low, high = 0, len(blocks) - 1  # the largest count in [low, high] that fits; `low` is the fallback
    while low < high:
        middle = (low + high + 1) // 2
        if len(keeping(middle).to_json()) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    fitted = keeping(low)
    return fitted, len(observation.payments) - len(fitted.payments)
