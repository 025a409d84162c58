"""Validate at the door: one strict parser per payload type, run before a payload touches a round.

Any agent may send any well-signed payload, so every field is checked for its
shape and bounds, and against what the round can know (the participants, the
events due, the agreed block time). A parser returns the typed value or raises
`InvalidPayload` with a short `reason` (a metric label) and a detail for the
log. Rounds call these from `check_payload`, which DeliverTx runs on every
agent (the framework's CheckTx only checks a transaction's signature): an
invalid payload is refused the same way on every agent
and counts as its sender's abstention, so `end_block` only ever sees values
that passed. No framework import: unit and property tests drive these directly.
"""

import json
import re
from typing import AbstractSet, Any, Dict, List, Sequence

from packages.settleproof.skills.settlement_abci.agreement import Observation
from packages.settleproof.skills.settlement_abci.outbox import (
    MAX_ERROR,
    DeliveryResult,
    load_dead_summary,
    load_entries,
    load_processed,
)
from packages.settleproof.skills.settlement_abci.invoices import UUID_RE
from packages.settleproof.skills.settlement_abci.recovery import CommittedState
from packages.settleproof.skills.settlement_abci.settings_digest import CLASSES as SETTINGS_CLASSES
from packages.settleproof.skills.settlement_abci.transfers import MAX_TIMESTAMP
from packages.settleproof.skills.settlement_abci.webhook_retry import (
    MAX_RETRY_DELAY_SECONDS,
    Outcome,
    outcome_of,
)


#: Tendermint refuses transactions over 1 MB (mempool `max_tx_bytes`); nothing we accept is larger.
MAX_PAYLOAD_BYTES = 1 << 20
#: Far beyond one period's work (1,000 settlements fit one transaction), far below what hurts.
MAX_OBSERVED_PAYMENTS = 20_000
MAX_OBSERVED_INVOICES = 20_000
#: Block numbers and unix seconds: int64 like Tendermint's, and never before the first block.
MAX_BLOCK = 2**63 - 1
MAX_UNIX_SECONDS = MAX_TIMESTAMP
MAX_UINT256 = 2**256 - 1
HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
ADDRESS_RE = re.compile(r"^0x[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
RESULT_FIELDS = frozenset({"id", "status", "error", "attempted_at", "retry_at"})
#: Our formats nest a few levels deep. The agent runs with a recursion limit of 100,000 (py_ecc
#: raises it at import), at which `json.loads("[" * 100_000)` overflows the C stack and kills the
#: process instead of raising RecursionError: nesting is bounded before anything is decoded.
MAX_NESTING = 16
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")


class InvalidPayload(ValueError):
    """A payload no honest agent sends: `reason` is a short label, the message says what was wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        """Keep the label apart from the detail, so the metric's label set stays small."""
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _int(value: Any, low: int, high: int, field: str) -> int:
    """An int (never a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidPayload("out_of_range", f"{field} = {value!r} is not an integer in [{low}, {high}]")
    return value


def _text(value: Any, field: str, limit: int = MAX_PAYLOAD_BYTES) -> str:
    if not isinstance(value, str):
        raise InvalidPayload("malformed", f"{field} is a {type(value).__name__}, not a string")
    if len(value) > limit:
        raise InvalidPayload("too_large", f"{field} is {len(value)} characters, more than {limit}")
    return value


def _shallow(text: str, field: str) -> str:
    """`text` unless its brackets (outside strings) nest deeper than `MAX_NESTING`."""
    depth = 0
    for bracket in _NOT_BRACKET_RE.sub("", _STRING_RE.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_NESTING:
            raise InvalidPayload("malformed", f"{field} nests deeper than {MAX_NESTING} levels")
    return text


def _json(text: Any, field: str) -> Any:
    checked = _shallow(_text(text, field), field)
    try:
        return json.loads(checked)
    except (ValueError, RecursionError) as error:
        raise InvalidPayload("malformed", f"{field} is not JSON: {error!r}"[:300]) from None


def parse_keeper(keeper: Any, participants: AbstractSet[str]) -> str:
    """A keeper vote names a participant."""
    if not isinstance(keeper, str) or keeper not in participants:
        raise InvalidPayload("unknown_agent", f"keeper {str(keeper)[:100]!r} is not a participant")
    return str(keeper)


def parse_failover(keeper: Any, failovers: Any, participants: AbstractSet[str]) -> int:
    """A failover vote names a participant and counts at most one failover per participant."""
    parse_keeper(keeper, participants)
    return _int(failovers, 0, len(participants), "failovers")


def parse_dedupe(events_digest: Any, block_time: Any) -> None:
    """A SHA-256 hex digest and a plausible block time."""
    if not isinstance(events_digest, str) or not SHA256_RE.fullmatch(events_digest):
        raise InvalidPayload("malformed", f"events_digest {str(events_digest)[:100]!r} is not a SHA-256 hex digest")
    _int(block_time, 0, MAX_UNIX_SECONDS, "block_time")


def parse_checkpoint(checkpoint: Any, block_hash: Any, state_digest: Any) -> None:
    """A checkpoint block (-1: none yet), its hash or "", and the state's SHA-256 digest."""
    _int(checkpoint, -1, MAX_BLOCK, "checkpoint")
    if block_hash != "" and not (isinstance(block_hash, str) and HASH_RE.fullmatch(block_hash)):
        raise InvalidPayload("malformed", f"block_hash {str(block_hash)[:100]!r} is neither '' nor a 32-byte 0x hash")
    if not isinstance(state_digest, str) or not SHA256_RE.fullmatch(state_digest):
        raise InvalidPayload("malformed", f"state_digest {str(state_digest)[:100]!r} is not a SHA-256 hex digest")


def parse_recovery(state: Any) -> CommittedState:
    """A committed state whose digest matches its content (`CommittedState.from_json`)."""
    checked = _shallow(_text(state, "state"), "state")
    try:
        report = CommittedState.from_json(checked)
        for key in ("outbox", "dead_letters"):  # what a resume would load: it must load
            load_entries(_shallow(report.values[key], key))
        load_processed(_shallow(report.values["processed_keys"], "processed_keys"))
        load_dead_summary(_shallow(report.values["dead_letter_summary"], "dead_letter_summary"))
    except (RecursionError, OverflowError, TypeError, KeyError, AttributeError) as error:
        raise InvalidPayload("malformed", f"state: {error!r}"[:300]) from None
    except ValueError as error:
        if isinstance(error, InvalidPayload):
            raise
        raise InvalidPayload("malformed", str(error)[:300]) from None
    _int(report.seq, 0, MAX_BLOCK, "seq")
    if report.checkpoint is not None:
        _int(report.checkpoint, 0, MAX_BLOCK, "checkpoint")
    if report.parent and not SHA256_RE.fullmatch(report.parent):
        raise InvalidPayload("malformed", f"parent {report.parent[:100]!r} is neither '' nor a SHA-256 hex digest")
    return report


def parse_settings(text: Any) -> Dict[str, str]:
    """One SHA-256 hex digest per settings class (`settings_digest.CLASSES`), nothing else."""
    digests = _json(_text(text, "settings", 1024), "settings")
    if not isinstance(digests, dict) or sorted(digests) != sorted(SETTINGS_CLASSES):
        raise InvalidPayload("malformed", f"settings must name exactly the classes {list(SETTINGS_CLASSES)}")
    for name, digest in digests.items():
        if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
            raise InvalidPayload("malformed", f"settings digest of {name} is not a SHA-256 hex digest")
    return digests


def parse_observation(text: Any) -> Observation:
    """An observation whose every field has its shape and bound, payments inside its own range."""
    checked = _shallow(_text(text, "observation"), "observation")
    try:
        observation = Observation.from_json(checked)
    except (RecursionError, OverflowError) as error:  # deep nesting; int(Infinity)
        raise InvalidPayload("malformed", f"observation: {error!r}"[:300]) from None
    except ValueError as error:
        raise InvalidPayload("malformed", str(error)[:300]) from None
    _int(observation.from_block, -1, MAX_BLOCK, "from_block")
    _int(observation.to_block, -2, MAX_BLOCK, "to_block")
    if observation.anchor_hash and not HASH_RE.fullmatch(observation.anchor_hash):
        raise InvalidPayload("malformed", "anchor_hash is not a 32-byte 0x hash")
    if len(observation.payments) > MAX_OBSERVED_PAYMENTS:
        raise InvalidPayload("too_many", f"{len(observation.payments)} payments, more than {MAX_OBSERVED_PAYMENTS}")
    for payment in observation.payments:
        _check_payment(payment, observation)
    invoices = observation.invoices or ()
    if len(invoices) > MAX_OBSERVED_INVOICES:
        raise InvalidPayload("too_many", f"{len(invoices)} invoices, more than {MAX_OBSERVED_INVOICES}")
    for invoice in invoices:
        _check_invoice(invoice)
    return observation


def _check_payment(payment: Any, observation: Observation) -> None:
    transfer = payment.transfer
    if not observation.from_block <= transfer.block_number <= observation.to_block:
        raise InvalidPayload("impossible", f"payment in block {transfer.block_number} outside the range it reports")
    _int(transfer.log_index, 0, MAX_BLOCK, "log_index")
    _int(transfer.value, 0, MAX_UINT256, "value")
    _int(payment.block_timestamp, 0, MAX_UNIX_SECONDS, "block_timestamp")
    for field in ("tx_hash", "block_hash"):
        if not HASH_RE.fullmatch(getattr(transfer, field)):
            raise InvalidPayload("malformed", f"payment {field} is not a 32-byte 0x hash")
    for field in ("token", "sender", "receiver"):
        if not ADDRESS_RE.fullmatch(getattr(transfer, field)):
            raise InvalidPayload("malformed", f"payment {field} is not a lower-case 20-byte 0x address")


def _check_invoice(invoice: Any) -> None:
    if not UUID_RE.fullmatch(invoice.uuid):
        raise InvalidPayload("malformed", f"invoice uuid {invoice.uuid[:140]!r} is not 1-128 of [A-Za-z0-9._~:-]")
    _int(invoice.amount, 0, MAX_UINT256, "amount")
    if invoice.created_block is not None:
        _int(invoice.created_block, 0, MAX_BLOCK, "created_block")
    for field in ("token", "receiver", "payer"):
        value = getattr(invoice, field)
        if value is not None and not ADDRESS_RE.fullmatch(value):
            raise InvalidPayload("malformed", f"invoice {field} is not a lower-case 20-byte 0x address")


def parse_delivery_report(text: Any, due_ids: Sequence[str], block_time: int) -> List[DeliveryResult]:
    """The keeper's report: one result per attempted event, each an event due this round, attempted
    at the agreed block time, with an HTTP status (or 0 for no reply) and a retry time in range."""
    items = _json(text, "delivery_report")
    if not isinstance(items, list):
        raise InvalidPayload("malformed", f"delivery_report is a {type(items).__name__}, not a list")
    due = set(due_ids)
    if len(items) > len(due):
        raise InvalidPayload("too_many", f"{len(items)} results for {len(due)} due events")
    results: Dict[str, DeliveryResult] = {}
    for item in items:
        result = _result(item, due, block_time)
        if result.id in results:
            raise InvalidPayload("duplicate", f"two results for {result.id[:200]!r}")
        results[result.id] = result
    return sorted(results.values())


def _result(item: Any, due: AbstractSet[str], block_time: int) -> DeliveryResult:
    if not isinstance(item, dict) or set(item) != RESULT_FIELDS:
        shape = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise InvalidPayload("malformed", f"a result with fields {shape!r}"[:300])
    event_id = item["id"]
    if event_id not in due:
        raise InvalidPayload("unknown_event", f"result for {str(event_id)[:200]!r}, which is not due")
    status = _int(item["status"], 0, 599, "status")
    if 0 < status < 100:
        raise InvalidPayload("out_of_range", f"status {status} is not an HTTP status")
    attempted_at = _int(item["attempted_at"], 0, MAX_UNIX_SECONDS, "attempted_at")
    if attempted_at != block_time:
        raise InvalidPayload("wrong_time", f"attempted_at {attempted_at}, not the round's block time {block_time}")
    retry_at = _int(item["retry_at"], 0, MAX_UNIX_SECONDS, "retry_at")
    outcome = outcome_of(status)
    if outcome in (Outcome.DELIVERED, Outcome.GONE):
        if retry_at != 0:
            raise InvalidPayload("out_of_range", f"retry_at {retry_at} after a final status {status}")
    elif not block_time <= retry_at <= block_time + MAX_RETRY_DELAY_SECONDS:
        raise InvalidPayload(
            "out_of_range", f"retry_at {retry_at} outside [{block_time}, {block_time + MAX_RETRY_DELAY_SECONDS}]"
        )
    error = _text(item["error"], "error", MAX_ERROR)
    return DeliveryResult(event_id, status, error, attempted_at, retry_at)

