"""The committed state of the service, its digest, and where a restarted service resumes.

Why: synchronized state lives in memory and in a chain that can be reset. Each
agent keeps the last state a Checkpoint round committed in its durable store;
after registration the agents share those states and `resume_from` picks the
one to continue from, the same way on every agent.

The rules, in favour of safety:

* a state counts only if at least `n - threshold + 1` agents report it
  identically (same commit number and digest), so at least one honest agent
  vouches that a Checkpoint round really committed it;
* of those, the newest (highest commit number) wins: it holds every event the
  service ever recorded, so nothing is lost;
* its checkpoint is lowered to the threshold-th highest checkpoint reported,
  so the service never resumes beyond what a quorum of agents durably holds;
  the blocks in between are scanned again and their events are dropped as
  duplicates by the processed keys;
* but never by more than the processed-keys retention window: older keys may
  have been let go, and a re-scan without them could pay an invoice twice.
  (Resuming at the vouched state's own checkpoint skips nothing either: a
  Checkpoint round committed it, so every event before it is recorded.)
"""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Sequence


#: The largest committed state (JSON bytes) agents can share after registration: it travels in one
#: consensus transaction, which Tendermint caps at 1 MB and sends hex-encoded in an RPC request line.
RECOVERY_LIMIT_BYTES = 400_000

#: The serialized synchronized values a commit holds besides the checkpoint.
VALUE_KEYS = ("dead_letters", "outbox", "processed_keys")
EMPTY_VALUES = {"dead_letters": "[]", "outbox": "[]", "processed_keys": "{}"}


@dataclass(frozen=True)
class CommittedState:
    """One committed state: commit number, checkpoint (block and hash) and the serialized values.

    `seq` counts the commits since the service first started (0: none yet); it
    orders states across restarts, where period numbers start again at 0.
    `checkpoint_hash` is "" when no quorum of providers named the block's hash.
    """

    seq: int = 0
    checkpoint: Optional[int] = None
    checkpoint_hash: str = ""
    values: Dict[str, str] = field(default_factory=lambda: dict(EMPTY_VALUES))

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of everything above: what agents vote on."""
        text = json.dumps(
            {
                "seq": self.seq,
                "checkpoint": self.checkpoint,
                "checkpoint_hash": self.checkpoint_hash,
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
            )
            digest = data["digest"]
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"malformed committed state: {error!r}") from None
        if digest != state.digest:
            raise ValueError("committed state does not match its digest")
        return state


def resume_from(
    reports: Sequence[CommittedState],
    threshold: int,
    participants: int,
    max_rescan_blocks: Optional[int] = None,
) -> Optional[CommittedState]:
    """The state to resume from, or None when no state is vouched for (start afresh)."""
    vouchers = max(1, participants - threshold + 1)
    counts = Counter((r.seq, r.digest) for r in reports)
    vouched = [r for r in reports if r.seq > 0 and counts[(r.seq, r.digest)] >= vouchers]
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
