"""Outbox transitions: events wait here until the merchant acknowledges them or they are dead-lettered.

Pure functions over JSON-friendly values so that every agent applies the
agreed delivery report to the agreed outbox and gets the same result.
"""

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Iterable, List, Sequence, Set, Tuple

from packages.settleproof.skills.settlement_abci.webhook import WebhookEvent


@dataclass(frozen=True, order=True)
class OutboxEntry:
    """One event awaiting delivery; `body` never changes after it is created."""

    id: str
    body: str
    attempts: int = 0
    last_status: int = 0
    last_error: str = ""


@dataclass(frozen=True, order=True)
class DeliveryResult:
    """What one POST attempt gave: an HTTP status, or 0 with an error for no response."""

    id: str
    status: int
    error: str = ""

    @property
    def delivered(self) -> bool:
        """A 2xx reply is the merchant's acknowledgement."""
        return 200 <= self.status < 300


def dumps(items: Iterable[Any]) -> str:
    """Canonical JSON of a sorted list of dataclasses."""
    return json.dumps([asdict(item) for item in sorted(items)], separators=(",", ":"), sort_keys=True)


def load_entries(text: str) -> List[OutboxEntry]:
    """Inverse of `dumps` for outbox entries."""
    return [OutboxEntry(**item) for item in json.loads(text or "[]")]


def load_results(text: str) -> List[DeliveryResult]:
    """Inverse of `dumps` for delivery results."""
    return [DeliveryResult(**item) for item in json.loads(text or "[]")]


#: Client errors other than these are the merchant refusing the event: retried only a few times.
RETRIED_CLIENT_ERRORS = (408, 429)
CLIENT_ERROR_ATTEMPTS = 3
GONE = 410


def attempts_allowed(status: int, max_attempts: int) -> int:
    """Attempts before dead-lettering after a reply of `status` (CONTRACTS.md): 410 at once,
    other 4xx (but 408 and 429) after a few, anything else after `max_attempts`."""
    if status == GONE:
        return 1
    if 400 <= status < 500 and status not in RETRIED_CLIENT_ERRORS:
        return min(max_attempts, CLIENT_ERROR_ATTEMPTS)
    return max_attempts


def used_transactions(processed_keys: Iterable[str]) -> Set[str]:
    """The tx hashes that already paid an invoice (keys are `invoice_uuid:tx_hash`)."""
    return {key.rsplit(":", 1)[1] for key in processed_keys}


def enqueue(
    outbox: Sequence[OutboxEntry], processed_keys: Iterable[str], events: Iterable[WebhookEvent]
) -> Tuple[List[OutboxEntry], List[str]]:
    """Add new events to the outbox and mark them processed, in one step."""
    processed = set(processed_keys)
    entries = {entry.id: entry for entry in outbox}
    for event in events:
        if event.id not in processed:
            processed.add(event.id)
            entries[event.id] = OutboxEntry(event.id, event.body)
    return sorted(entries.values()), sorted(processed)


def apply_results(
    outbox: Sequence[OutboxEntry],
    results: Iterable[DeliveryResult],
    max_attempts: int,
) -> Tuple[List[OutboxEntry], List[OutboxEntry], List[str]]:
    """Apply an agreed delivery report: (remaining outbox, newly dead-lettered, delivered ids)."""
    by_id: Dict[str, DeliveryResult] = {result.id: result for result in results}
    remaining, dead, delivered = [], [], []
    for entry in outbox:
        result = by_id.get(entry.id)
        if result is None:
            remaining.append(entry)
        elif result.delivered:
            delivered.append(entry.id)
        else:
            failed = replace(
                entry,
                attempts=entry.attempts + 1,
                last_status=result.status,
                last_error=result.error[:200],
            )
            limit = attempts_allowed(result.status, max_attempts)
            (dead if failed.attempts >= limit else remaining).append(failed)
    return remaining, dead, delivered
