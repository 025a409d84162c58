"""The committed state of the service, its digest, and where a restarted service resumes.

Why: synchronized state lives in memory and in a chain that can be reset. Each
agent keeps the last state a Checkpoint round committed in its durable store;
after registration the agents share those states and `resume_from` picks the
one to continue from, the same way on every agent.

The rules, in favour of safety (f = n - threshold agents may lie):

* a state counts only if at least f + 1 agents vouch for it, so at least one honest
  agent does. An agent vouches for the state it reports and for that state's parent
  (each commit names the digest of the one before): after a kill -9 some stores
  hold the last commit and some the one before, and both sets vouch for the older;
* of those, the newest (highest commit number) wins: it holds every event the
  service ever recorded, so nothing is lost; an older one loses nothing either, as
  its checkpoint is older too and the blocks after it are scanned again;
* its checkpoint is lowered to the threshold-th highest checkpoint reported,
  so the service never resumes beyond what a quorum of agents durably holds;
  the blocks in between are scanned again and their events are dropped as
  duplicates by the processed keys;
* but never by more than the processed-keys retention window: older keys may
  have been let go, and a re-scan without them could pay an invoice twice.
  (Resuming at the vouched state's own checkpoint skips nothing either: a
  Checkpoint round committed it, so every event before it is recorded.)
* when some report holds a committed state newer than every vouched one, the
  service waits for more reports rather than resume before it (or start afresh)
  and forget what it recorded; once every agent reported, a state still not
  vouched for is one no f + 1 stores hold, which a liar alone can claim: it is
  ignored, and with nothing vouched the service starts afresh, from
  SETTLEPROOF_START_BLOCK (set it, and a fresh start re-scans everything).
"""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence

from packages.settleproof.skills.settlement_abci.outbox import EMPTY_DEAD_SUMMARY


#: The largest committed state (JSON bytes) agents can share after registration: it travels in one
#: consensus transaction, which Tendermint caps at 1 MB and sends hex-encoded in an RPC request line.
RECOVERY_LIMIT_BYTES = 400_000

#: The serialized synchronized values a commit holds besides the checkpoint.
VALUE_KEYS = ("dead_letter_summary", "dead_letters", "outbox", "processed_keys")
EMPTY_VALUES = {
    "dead_letter_summary": EMPTY_DEAD_SUMMARY, "dead_letters": "[]", "outbox": "[]", "processed_keys": "{}"
}


@dataclass(frozen=True)
class CommittedState:
    """One committed state: commit number, checkpoint (block and hash) and the serialized values.

    `seq` counts the commits since the service first started (0: none yet); it
    orders states across restarts, where period numbers start again at 0.
    `checkpoint_hash` is "" when no quorum of providers named the block's hash;
    `parent` is the digest of the commit before ("" when not known).
    """

    seq: int = 0
    checkpoint: Optional[int] = None
    checkpoint_hash: str = ""
    values: Dict[str, str] = field(default_factory=lambda: dict(EMPTY_VALUES))
    parent: str = ""

    def __post_init__(self) -> None:
        """Every value key present (missing ones empty), so equal states compare equal."""
        object.__setattr__(self, "values", {key: self.values.get(key, EMPTY_VALUES[key]) for key in VALUE_KEYS})

    def successor(self, checkpoint: Optional[int], checkpoint_hash: str, values: Dict[str, str]) -> "CommittedState":
        """The next commit after this one, naming this one as its parent."""
        return CommittedState(self.seq + 1, checkpoint, checkpoint_hash, values, self.digest)

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of everything above: what agents vote on."""
        text = json.dumps(
            {
                "seq": self.seq,
                "checkpoint": self.checkpoint,
                "checkpoint_hash": self.checkpoint_hash,
                "parent": self.parent,
                **{key: self.values.get(key, EMPTY_VALUES[key]) for key in VALUE_KEYS},
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> str:
        """Canonical JSON, digest included so a reader can tell a damaged copy."""
        return json.dumps(
            {
                "seq": self.seq,
                "checkpoint": self.checkpoint,
                "checkpoint_hash": self.checkpoint_hash,
                "parent": self.parent,
                "values": {key: self.values.get(key, EMPTY_VALUES[key]) for key in VALUE_KEYS},
                "digest": self.digest,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> "CommittedState":
        """Inverse of `to_json`; raises ValueError when the text is malformed or its digest wrong."""
        try:
            data = json.loads(text)
            values = data["values"]
            state = cls(
                seq=int(data["seq"]),
                checkpoint=None if data["checkpoint"] is None else int(data["checkpoint"]),
                checkpoint_hash=str(data["checkpoint_hash"]),
                values={key: str(values[key]) for key in VALUE_KEYS},
                parent=str(data["parent"]),
            )
            digest = data["digest"]
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"malformed committed state: {error!r}") from None
        if digest != state.digest:
            raise ValueError("committed state does not match its digest")
        return state


def _vouchers(participants: int, threshold: int) -> int:
    """f + 1: the fewest agents of which one must be honest."""
    return max(1, participants - threshold + 1)


def vouched_states(reports: Sequence[CommittedState], vouchers: int) -> List[CommittedState]:
    """The committed states (seq > 0) that at least `vouchers` reports vouch for: by reporting the
    state itself or its direct successor."""
    states = {r.digest: r for r in reports if r.seq > 0}
    support: Counter = Counter()
    for report in reports:
        support[report.digest] += 1
        if report.parent in states and states[report.parent].seq == report.seq - 1:
            support[report.parent] += 1
    return [state for digest, state in states.items() if support[digest] >= vouchers]


def resume_from(
    reports: Sequence[CommittedState],
    threshold: int,
    participants: int,
    max_rescan_blocks: Optional[int] = None,
) -> Optional[CommittedState]:
    """The state to resume from, or None when no state is vouched for (see `decide`)."""
    vouchers = _vouchers(participants, threshold)
    vouched = vouched_states(reports, vouchers)
    if not vouched:
        return None
    newest = max(vouched, key=lambda r: (r.seq, r.digest))
    held = sorted((r.checkpoint for r in reports if r.checkpoint is not None), reverse=True)
    if newest.checkpoint is None or len(held) < threshold or held[threshold - 1] >= newest.checkpoint:
        return newest
    lowered = held[threshold - 1]
    if max_rescan_blocks is not None:
        lowered = max(lowered, newest.checkpoint - max_rescan_blocks)
    hashes = Counter(r.checkpoint_hash for r in reports if r.checkpoint == lowered and r.checkpoint_hash)
    known = [h for h, n in hashes.items() if n >= vouchers]
    return replace(newest, checkpoint=lowered, checkpoint_hash=min(known) if known else "")


@dataclass(frozen=True)
class Decision:
    """What a RecoverState round does: resume from `state`, start afresh (no state, no wait), or wait
    for more reports; `reason` says why when it does not resume."""

    state: Optional[CommittedState] = None
    wait: bool = False
    reason: str = ""


def decide(
    reports: Sequence[CommittedState],
    threshold: int,
    participants: int,
    max_rescan_blocks: Optional[int] = None,
) -> Decision:
    """Resume from the newest vouched state, once no newer one may still be vouched for: every commit
    reaches at least f + 1 stores, so a newer state that only some of the reports hold may be real
    (resuming before it would forget the payments it recorded), until every agent has reported."""
    chosen = resume_from(reports, threshold, participants, max_rescan_blocks)
    newest_vouched = 0 if chosen is None else chosen.seq
    newer = sorted(r.seq for r in reports if r.seq > newest_vouched)
    vouchers = _vouchers(participants, threshold)
    if newer and len(reports) < participants:
        return Decision(wait=True, reason=f"{len(reports)} of {participants} agents reported; commits {newer} "
                                          f"are not vouched for by {vouchers} agents yet")
    if chosen is not None:
        return Decision(chosen)
    if not newer:
        return Decision()  # nothing was ever committed: a first start
    return Decision(reason=f"every agent reported and no committed state is vouched for by {vouchers} of them "
                           f"(commits {newer}): scanning from SETTLEPROOF_START_BLOCK, or the safe head if unset")
