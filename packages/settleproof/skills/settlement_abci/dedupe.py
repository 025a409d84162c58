"""The period's new events, derived from agreed data only, and the digest agents vote on.

Why a digest: every agent derives the same events from the same agreed scan
and processed keys, so the Dedupe round only needs agents to agree that they
did; a payload carrying a thousand webhook bodies would outgrow a consensus
transaction (Tendermint's default limit is 1 MB). The round derives the events
itself and commits them only if they match the voted digest.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping, Tuple

#: The most events synchronized state holds waiting for the merchant (about 1 KB each). A period
#: whose events would not fit stops its range before the first that does not, so a merchant down
#: for days leaves its payments in the chain (agreed again later) instead of in every agent's
#: memory and in the committed state that a recovery sends through consensus.
MAX_OUTBOX_ENTRIES = 100

from packages.settleproof.skills.settlement_abci.agreement import Agreement
from packages.settleproof.skills.settlement_abci.matching import Settlement, match
from packages.settleproof.skills.settlement_abci.outbox import used_transactions
from packages.settleproof.skills.settlement_abci.webhook import WebhookEvent, build_event


@dataclass(frozen=True)
class NewEvents:
    """What a scan adds: the events (sorted by id), their settlements, and the payments dropped
    because their transaction already paid an invoice (re-scanned blocks)."""

    events: Tuple[WebhookEvent, ...]
    settlements: Tuple[Settlement, ...]
    duplicates: int

    @property
    def digest(self) -> str:
        """SHA-256 of the events' ids and bodies in id order."""
        text = json.dumps([[e.id, e.body] for e in self.events], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def derive_events(
    agreement: Agreement, processed: Mapping[str, int], confirmations: int
) -> NewEvents:
    """Match the agreed payments not yet used to the agreed invoices not yet settled."""
    used = used_transactions(processed)
    fresh = [p for p in agreement.payments if p.transfer.tx_hash not in used]
    settled = {key.rsplit(":", 1)[0] for key in processed}
    timestamps = {p.transfer: p.block_timestamp for p in fresh}
    settlements = match(agreement.invoices, list(timestamps), settled)
    events = sorted(
        (build_event(s, timestamps[s.transfer], confirmations) for s in settlements),
        key=lambda e: e.id,
    )
    return NewEvents(tuple(events), tuple(settlements), len(agreement.payments) - len(fresh))


def within_capacity(
    agreement: Agreement, processed: Mapping[str, int], confirmations: int, waiting: int
) -> Tuple[Agreement, NewEvents]:
    """`agreement` cut before the first block whose events would take the outbox (holding `waiting`
    events) past `MAX_OUTBOX_ENTRIES`, and the cut scan's events. Matching goes in chain order, so
    the cut scan yields exactly the events of the whole scan up to the cut. An empty outbox always
    takes the first block with events, however many, so a busy block can never stop the service."""
    derived = derive_events(agreement, processed, confirmations)
    room = MAX_OUTBOX_ENTRIES - waiting
    if not derived.events or len(derived.events) <= room:
        return agreement, derived
    blocks = sorted(settlement.transfer.block_number for settlement in derived.settlements)
    to_block = blocks[max(room, 0)] - 1
    if waiting == 0 and to_block < blocks[0]:
        to_block = blocks[0]
    to_block = max(to_block, agreement.from_block - 1)
    payments = tuple(p for p in agreement.payments if p.transfer.block_number <= to_block)
    cut = Agreement(agreement.from_block, to_block, payments, agreement.invoices)
    return cut, derive_events(cut, processed, confirmations)
