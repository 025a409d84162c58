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
