"""Outbox transitions: events wait here until the merchant acknowledges them or they are dead-lettered.

Pure functions over JSON-friendly values so that every agent applies the
agreed delivery report to the agreed outbox and gets the same result. Times
are block times (unix seconds of the consensus chain), never an agent's clock.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import AbstractSet, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from packages.settleproof.skills.settlement_abci.webhook_retry import (
    Backoff,
    Outcome,
    next_attempt_delay,
    outcome_of,
)
from packages.settleproof.skills.settlement_abci.webhook import WebhookEvent


#: Errors are cut to this length in reports and state, so a chatty merchant cannot bloat consensus.
MAX_ERROR = 200


@dataclass(frozen=True, order=True)
class OutboxEntry:  # pylint: disable=too-many-instance-attributes
    """One event awaiting delivery (or, in the dead-letter queue, given up on).

    `id` and `body` never change after the entry is created; the rest records
    the attempts. `dead_reason` is set only on dead letters; `acknowledgements`
    counts the 2xx replies keepers reported (see `close_acknowledged`).
    """

    id: str
    body: str
    attempts: int = 0
    last_status: int = 0
    last_error: str = ""
    created_at: int = 0
    next_attempt_at: int = 0
    last_attempt_at: int = 0
    dead_reason: str = ""
    acknowledgements: int = 0

    @property
    def acknowledged(self) -> bool:
        """A keeper reported a 2xx for it: it waits only to see the merchant close its invoice."""
        return self.acknowledgements > 0

    @property
    def invoice_uuid(self) -> str:
        """The invoice the event pays (ids are `invoice_uuid:tx_hash`)."""
        return self.id.rpartition(":")[0]


@dataclass(frozen=True, order=True)
class DeliveryResult:
    """What one POST attempt gave (an HTTP status, or 0 with an error for no reply),
    when it was made, and when the keeper scheduled the next attempt (block times)."""

    id: str
    status: int
    error: str = ""
    attempted_at: int = 0
    retry_at: int = 0

    @property
    def delivered(self) -> bool:
        """A 2xx reply is the merchant's acknowledgement."""
        return outcome_of(self.status) is Outcome.DELIVERED


@dataclass(frozen=True)
class OutboxPolicy:
    """When to give up on an event (README): 410 at once, other 4xx after
    `client_error_attempts`, anything else after `max_attempts` or `max_age_seconds`."""

    max_attempts: int = 10
    client_error_attempts: int = 3
    max_age_seconds: int = 72 * 3600


def dumps(items: Iterable[Any]) -> str:
    """Canonical JSON of a sorted list of dataclasses."""
    return json.dumps([asdict(item) for item in sorted(items)], separators=(",", ":"), sort_keys=True)


def load_entries(text: str) -> List[OutboxEntry]:
    """Inverse of `dumps` for outbox entries."""
    return [OutboxEntry(**item) for item in json.loads(text or "[]")]


def load_results(text: str) -> List[DeliveryResult]:
    """Inverse of `dumps` for delivery results."""
    return [DeliveryResult(**item) for item in json.loads(text or "[]")]


def event_fields(event_id: str) -> Dict[str, str]:
    """An event's id and the invoice and transaction it names (`invoice_uuid:tx_hash`), as log fields."""
    invoice_uuid, _, tx_hash = event_id.rpartition(":")
    return {"event_id": event_id, "invoice_uuid": invoice_uuid, "tx_hash": tx_hash}


def used_transactions(processed_keys: Iterable[str]) -> Set[str]:
    """The tx hashes that already paid an invoice (keys are `invoice_uuid:tx_hash`)."""
    return {key.rsplit(":", 1)[1] for key in processed_keys}


def enqueue(
    outbox: Sequence[OutboxEntry],
    processed_keys: Mapping[str, int],
    events: Iterable[WebhookEvent],
    now: int = 0,
) -> Tuple[List[OutboxEntry], Dict[str, int]]:
    """Add new events to the outbox, due at once, and mark them processed (key -> the payment's
    block), in one step."""
    processed = dict(processed_keys)
    entries = {entry.id: entry for entry in outbox}
    for event in events:
        if event.id not in processed:
            processed[event.id] = event.block_number
            entries[event.id] = OutboxEntry(event.id, event.body, created_at=now, next_attempt_at=now)
    return sorted(entries.values()), dict(sorted(processed.items()))


def retain(
    processed_keys: Mapping[str, int],
    checkpoint: Optional[int],
    window_blocks: int,
    open_invoices: AbstractSet[str],
) -> Dict[str, int]:
    """The processed keys synchronized state keeps: those of the last `window_blocks` blocks up to
    the checkpoint, and those of invoices the merchant still lists as open.

    Why this is safe: a log at or below the checkpoint is never scanned again, except the few
    blocks a recovery re-scans (far fewer than the window); and an invoice is only matched while
    it is listed, so its settled key must stay only that long. The durable store keeps every key.
    """
    if checkpoint is None:
        return dict(processed_keys)
    oldest = checkpoint - window_blocks
    return {
        key: block
        for key, block in processed_keys.items()
        if block > oldest or key.rsplit(":", 1)[0] in open_invoices
    }


#: No event given up on yet.
EMPTY_DEAD_SUMMARY = '{"count":0,"digest":""}'


def summarize_dead(summary: str, newly_dead: Sequence[OutboxEntry]) -> str:
    """The dead-letter summary after `newly_dead`: their count added, and a digest that chains every
    dead letter ever (SHA-256 of the previous digest and the new entries' canonical JSON), so two
    agents' stores can be compared with the agreed state without the state holding them."""
    count, digest = load_dead_summary(summary)
    if not newly_dead:
        return summary
    digest = hashlib.sha256((digest + dumps(newly_dead)).encode()).hexdigest()
    return json.dumps({"count": count + len(newly_dead), "digest": digest}, separators=(",", ":"))


def load_dead_summary(summary: str) -> Tuple[int, str]:
    """(count, digest) of a dead-letter summary; raises ValueError when malformed."""
    try:
        data = json.loads(summary)
        count, digest = data["count"], data["digest"]
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"malformed dead-letter summary: {error!r}") from None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0 or not isinstance(digest, str):
        raise ValueError("malformed dead-letter summary: count or digest of the wrong type")
    return count, digest


def dumps_processed(processed_keys: Mapping[str, int]) -> str:
    """Canonical JSON of the processed keys (an object, key -> block, sorted by key)."""
    return json.dumps(dict(sorted(processed_keys.items())), separators=(",", ":"))


def load_processed(text: Optional[str]) -> Dict[str, int]:
    """Inverse of `dumps_processed`."""
    return {str(key): int(block) for key, block in json.loads(text or "{}").items()}


#: A keeper's 2xx is not taken on its word: the entry stays until the merchant's list, read by a
#: threshold of agents, no longer shows its invoice. Still shown this long after the 2xx, it is sent
#: again under the same id (the merchant deduplicates by id), at most `MAX_ACKNOWLEDGEMENTS` times
#: in all, so a lying keeper cannot lose an event and an honest merchant slow to close its invoices
#: gets at most two copies.
REDELIVERY_AFTER_SECONDS = 20
MAX_ACKNOWLEDGEMENTS = 3


def due(
    outbox: Sequence[OutboxEntry],
    now: int,
    limit: Optional[int] = None,
    open_invoices: Optional[AbstractSet[str]] = None,
) -> List[OutboxEntry]:
    """The entries whose next attempt time has come, longest waiting first, at most `limit`.
    An acknowledged entry is due again only when `open_invoices` (None: not known this period)
    still holds its invoice."""
    ready = sorted(
        (e for e in outbox if e.next_attempt_at <= now and _may_send(e, open_invoices)),
        key=lambda e: (e.next_attempt_at, e.created_at, e.id),
    )
    return ready if limit is None else ready[: max(0, limit)]


def _may_send(entry: OutboxEntry, open_invoices: Optional[AbstractSet[str]]) -> bool:
    if not entry.acknowledged:
        return True
    return (
        open_invoices is not None
        and entry.invoice_uuid in open_invoices
        and entry.acknowledgements < MAX_ACKNOWLEDGEMENTS
    )


def close_acknowledged(
    outbox: Sequence[OutboxEntry], open_invoices: Optional[AbstractSet[str]]
) -> Tuple[List[OutboxEntry], List[OutboxEntry]]:
    """(remaining, closed): acknowledged entries leave once the merchant no longer lists their
    invoice, or once they were acknowledged `MAX_ACKNOWLEDGEMENTS` times; `open_invoices` None
    (this period did not read the merchant's list) closes only the latter."""
    remaining, closed = [], []
    for entry in outbox:
        done = entry.acknowledgements >= MAX_ACKNOWLEDGEMENTS or (
            entry.acknowledged and open_invoices is not None and entry.invoice_uuid not in open_invoices
        )
        (closed if done else remaining).append(entry)
    return remaining, closed


def attempt_result(  # pylint: disable=too-many-arguments
    entry: OutboxEntry,
    status: int,
    error: str,
    retry_after: Optional[float],
    now: int,
    backoff: Backoff,
) -> DeliveryResult:
    """The keeper's report of one attempt made at block time `now`, with the next attempt scheduled
    (none after a 2xx or a 410)."""
    retry_at = 0
    if outcome_of(status) in (Outcome.RETRY, Outcome.REJECTED):
        retry_at = now + next_attempt_delay(entry.attempts + 1, backoff, retry_after)
    return DeliveryResult(entry.id, status, error[:MAX_ERROR], now, retry_at)


def give_up_reason(entry: OutboxEntry, outcome: Outcome, policy: OutboxPolicy) -> str:
    """Why a failed entry (its attempts already counted) leaves the outbox, or "" to keep it."""
    if outcome is Outcome.GONE:
        return "gone"
    if outcome is Outcome.REJECTED and entry.attempts >= policy.client_error_attempts:
        return "rejected"
    if entry.attempts >= policy.max_attempts:
        return "max_attempts"
    if entry.last_attempt_at >= entry.created_at + policy.max_age_seconds:
        return "max_age"
    return ""


def apply_results(
    outbox: Sequence[OutboxEntry],
    results: Iterable[DeliveryResult],
    policy: OutboxPolicy,
) -> Tuple[List[OutboxEntry], List[OutboxEntry], List[str]]:
    """Apply an agreed delivery report: (remaining outbox, newly dead-lettered, delivered ids).

    A delivered entry stays, acknowledged, until `close_acknowledged` lets it go. A 410 dead-letters
    the entry when the attempt before was a 410 too: two keepers' in a row, as the next one retries
    at once, so a lying keeper cannot dead-letter an event alone.
    The next attempt is the keeper's, kept within [attempt time, created + max age],
    so the last attempt falls at the age limit and a bad report cannot park an event forever.
    """
    by_id: Dict[str, DeliveryResult] = {result.id: result for result in results}
    remaining, dead, delivered = [], [], []
    for entry in outbox:
        result = by_id.get(entry.id)
        if result is None:
            remaining.append(entry)
            continue
        if result.delivered:
            delivered.append(entry.id)
            remaining.append(replace(
                entry,
                attempts=entry.attempts + 1,
                last_status=result.status,
                last_error="",
                last_attempt_at=result.attempted_at,
                next_attempt_at=result.attempted_at + REDELIVERY_AFTER_SECONDS,
                acknowledgements=entry.acknowledgements + 1,
            ))
            continue
        deadline = entry.created_at + policy.max_age_seconds
        failed = replace(
            entry,
            attempts=entry.attempts + 1,
            last_status=result.status,
            last_error=result.error[:MAX_ERROR],
            last_attempt_at=result.attempted_at,
            next_attempt_at=min(max(result.retry_at, result.attempted_at), deadline),
        )
        reason = give_up_reason(failed, outcome_of(result.status), policy)
        if reason == "gone" and entry.last_status != result.status:
            # One keeper's 410 is its word only: the next keeper's attempt, due at once, confirms it.
            reason = ""
        if reason and entry.acknowledged:
            continue  # a copy the merchant already acknowledged once: never a dead letter
        if reason:
            dead.append(replace(failed, dead_reason=reason))
        else:
            remaining.append(failed)
    return remaining, dead, delivered
