"""Provider quorum: what at least `quorum` independent RPC providers said identically.

A provider's answer is `None` when it failed (transport error, malformed reply);
a failed provider counts towards nothing.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

from packages.settleproof.skills.settlement_abci.transfers import Transfer


@dataclass(frozen=True)
class LogQuorum:
    """The outcome of comparing the providers' logs for one block range."""

    ok: bool
    accepted: Tuple[Transfer, ...]
    disputed: Tuple[Transfer, ...]
    undecided: Tuple[Transfer, ...]
    answered: Tuple[str, ...]
    disagreeing: Tuple[str, ...]

    def safe_through(self, to_block: int) -> int:
        """The last block of the range that no undecided log could still change."""
        if not self.undecided:
            return to_block
        return min(to_block, self.undecided[0].block_number - 1)


def quorum_head(heads: Mapping[str, Optional[int]], quorum: int) -> Optional[int]:
    """The highest block that at least `quorum` providers have reached, or None.

    Taking the quorum-th highest answer tolerates providers a block or two
    apart, and ignores a single provider far ahead (or far behind) the others.
    """
    reported = sorted((h for h in heads.values() if h is not None), reverse=True)
    if len(reported) < quorum:
        return None
    return reported[quorum - 1]


def quorum_logs(answers: Mapping[str, Optional[Sequence[Transfer]]], quorum: int) -> LogQuorum:
    """Accept a log only when at least `quorum` providers returned it with identical fields.

    A log some provider returned but fewer than `quorum` did is disputed. A
    disputed log is also undecided while the silent providers could still lift
    it to quorum (a provider that dropped it while another was down): the
    caller must not move its checkpoint past an undecided log. `ok` is False
    when fewer than `quorum` providers answered: nothing is trusted for the range.
    """
    answered = tuple(sorted(name for name, logs in answers.items() if logs is not None))
    silent = len(answers) - len(answered)
    votes: Counter = Counter()
    for name in answered:
        votes.update(set(answers[name] or ()))
    if len(answered) < quorum:
        return LogQuorum(False, (), tuple(sorted(votes)), tuple(sorted(votes)), answered, ())
    accepted = sorted(log for log, count in votes.items() if count >= quorum)
    # Two versions of one log can each reach a quorum that is not a majority
    # (2 of 4 providers): then neither is trusted and the range stops before them.
    split = {p for p, n in Counter(log.position for log in accepted).items() if n > 1}
    accepted = [log for log in accepted if log.position not in split]
    disputed = sorted(log for log in votes if log not in accepted)
    undecided = [
        log for log in disputed if votes[log] + silent >= quorum or log.position in split
    ]
    accepted_set = set(accepted)
    disagreeing = tuple(
        name for name in answered if set(answers[name] or ()) != accepted_set
    )
    return LogQuorum(
        True, tuple(accepted), tuple(disputed), tuple(undecided), answered, disagreeing
    )


def contradictions(logs: Sequence[Transfer], result: LogQuorum) -> int:
    """How many of a provider's logs the quorum refutes, plus accepted logs it left out.

    A log still undecided refutes nobody: the provider that has it may be the honest one.
    """
    if not result.ok:
        return 0
    mine, accepted = set(logs), set(result.accepted)
    return len(mine - accepted - set(result.undecided)) + len(accepted - mine)


def quorum_blocks(
    answers: Mapping[str, Optional[Mapping[int, Tuple[str, int]]]], quorum: int
) -> Dict[int, Tuple[str, int]]:
    """Per block number, the (hash, timestamp) at least `quorum` providers agree on.

    A block for which two different values both reach `quorum` is disputed and
    left out, rather than picked by the order the providers were listed in.
    """
    votes: Dict[int, Counter] = {}
    for blocks in answers.values():
        for number, value in (blocks or {}).items():
            votes.setdefault(number, Counter())[value] += 1
    agreed = {}
    for number, counter in votes.items():
        reached = [value for value, count in counter.items() if count >= quorum]
        if len(reached) == 1:
            agreed[number] = reached[0]
    return agreed

