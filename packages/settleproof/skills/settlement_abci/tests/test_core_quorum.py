"""Provider quorum over heads, logs and blocks: what `quorum` providers said identically."""

from collections import Counter
from typing import Dict, Optional

from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.quorum import (
    contradictions,
    quorum_blocks,
    quorum_head,
    quorum_logs,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    examples,
    make_transfer,
    provider_answers,
    variant,
)


heads_strategy = st.dictionaries(
    st.sampled_from([f"https://rpc-{n}" for n in range(6)]),
    st.none() | st.integers(min_value=0, max_value=30),
)


@st.composite
def answers_and_quorum(draw):
    """Provider answers and a quorum between 1 and the number of providers."""
    answers = draw(provider_answers())
    return answers, draw(st.integers(min_value=1, max_value=len(answers)))


def vote_counts(answers) -> Counter:
    """How many providers returned each log (a provider counts once per log)."""
    return Counter(log for logs in answers.values() if logs is not None for log in set(logs))


# --- quorum_head ------------------------------------------------------------------


@examples(100)
@given(heads_strategy, st.integers(min_value=1, max_value=6))
def test_quorum_head_is_the_quorum_th_highest(heads, quorum):
    """At least `quorum` providers reached the head, and fewer than `quorum` are past it."""
    head = quorum_head(heads, quorum)
    reported = [h for h in heads.values() if h is not None]
    if len(reported) < quorum:
        assert head is None
        return
    assert head is not None
    assert sum(1 for h in reported if h >= head) >= quorum
    assert sum(1 for h in reported if h > head) < quorum
    assert head == sorted(reported, reverse=True)[quorum - 1]


def test_quorum_head_ignores_one_provider_far_ahead_and_failed_ones():
    """A single runaway provider cannot push the head; failures count for nothing."""
    heads = {"a": 100, "b": 101, "c": 5000, "d": None}
    assert quorum_head(heads, 2) == 101
    assert quorum_head(heads, 3) == 100
    assert quorum_head(heads, 4) is None
    assert quorum_head({}, 1) is None


# --- quorum_logs ------------------------------------------------------------------


@examples(100)
@given(answers_and_quorum())
def test_quorum_logs_accepts_exactly_what_quorum_providers_returned(data):
    """`accepted` = logs returned identically by >= quorum providers; ok iff quorum answered."""
    answers, quorum = data
    result = quorum_logs(answers, quorum)
    votes = vote_counts(answers)
    answered = [name for name, logs in answers.items() if logs is not None]
    assert result.ok == (len(answered) >= quorum)
    assert result.answered == tuple(sorted(answered))
    if result.ok:
        reached = {log for log, n in votes.items() if n >= quorum}
        positions = Counter(log.position for log in reached)
        assert set(result.accepted) == {log for log in reached if positions[log.position] == 1}
        for log in reached - set(result.accepted):
            assert log in result.undecided
    else:
        assert result.accepted == ()
    for log in result.accepted:
        assert votes[log] >= quorum
    for log in result.disputed:
        assert log not in result.accepted
    assert set(result.accepted) | set(result.disputed) == set(votes)
    assert set(result.undecided) <= set(result.disputed)
    assert list(result.accepted) == sorted(result.accepted)


@examples(100)
@given(answers_and_quorum())
def test_undecided_logs_are_those_silent_providers_could_lift(data):
    """A disputed log is undecided iff its votes plus the failed providers reach quorum
    (when ok), and `safe_through` stops before every undecided log."""
    answers, quorum = data
    result = quorum_logs(answers, quorum)
    votes = vote_counts(answers)
    silent = sum(1 for logs in answers.values() if logs is None)
    if result.ok:
        assert set(result.undecided) == {
            log for log in result.disputed if votes[log] + silent >= quorum
        }
    to_block = 104
    safe = result.safe_through(to_block)
    assert safe <= to_block
    for log in result.undecided:
        assert log.block_number > safe
    for log in result.disputed:
        if log.block_number <= safe and result.ok:
            assert votes[log] + silent < quorum
    if not result.undecided:
        assert safe == to_block


@examples(60)
@given(answers_and_quorum(), st.randoms(use_true_random=False))
def test_quorum_logs_ignores_provider_and_log_order(data, rnd):
    """Reordering providers or the logs inside an answer changes nothing but nothing."""
    answers, quorum = data
    names = list(answers)
    rnd.shuffle(names)
    shuffled = {}
    for name in names:
        logs = None if answers[name] is None else list(answers[name])
        if logs is not None:
            rnd.shuffle(logs)
        shuffled[name] = logs
    first, second = quorum_logs(answers, quorum), quorum_logs(shuffled, quorum)
    assert first.accepted == second.accepted
    assert first.disputed == second.disputed
    assert first.undecided == second.undecided
    assert first.answered == second.answered
    assert set(first.disagreeing) == set(second.disagreeing)


def test_a_log_differing_in_one_field_is_not_the_same_log():
    """Two providers agreeing on the position but not the value do not form a quorum."""
    log = make_transfer(block_number=101)
    liar = variant(log, log.value * 10)
    result = quorum_logs({"a": [log], "b": [liar], "c": [log]}, 2)
    assert result.ok and result.accepted == (log,)
    assert result.disputed == (liar,)
    assert result.undecided == ()
    assert result.disagreeing == ("b",)


def test_a_log_missing_while_a_provider_is_down_is_undecided():
    """2-of-3 with one provider down: a log one provider has could still reach quorum."""
    seen = make_transfer(block_number=103)
    early = make_transfer(block_number=101, log_index=2)
    result = quorum_logs({"a": [early, seen], "b": [early], "c": None}, 2)
    assert result.ok
    assert result.accepted == (early,)
    assert result.undecided == (seen,)
    assert result.safe_through(110) == 102
    assert result.disagreeing == ("a",)


def test_too_few_answers_trust_nothing():
    """Fewer than quorum answers: not ok, nothing accepted, everything undecided."""
    log = make_transfer()
    result = quorum_logs({"a": [log], "b": None, "c": None}, 2)
    assert not result.ok
    assert result.accepted == ()
    assert result.undecided == (log,)


def test_duplicate_log_in_one_answer_counts_once():
    """A provider repeating a log cannot vote twice for it."""
    log = make_transfer()
    result = quorum_logs({"a": [log, log], "b": []}, 2)
    assert result.accepted == ()
    assert result.disputed == (log,)


# --- quorum_blocks ----------------------------------------------------------------

block_values = st.sampled_from([("0x" + "11" * 32, 1000), ("0x" + "22" * 32, 1000), ("0x" + "11" * 32, 1012)])


@st.composite
def block_answers(draw):
    """Per provider, the (hash, timestamp) it reported per block, or None when it failed."""
    count = draw(st.integers(min_value=1, max_value=5))
    answers: Dict[str, Optional[Dict[int, tuple]]] = {}
    for n in range(count):
        answers[f"https://rpc-{n}"] = draw(
            st.none() | st.dictionaries(st.integers(100, 103), block_values)
        )
    return answers, draw(st.integers(min_value=1, max_value=count))


@examples(100)
@given(block_answers(), st.randoms(use_true_random=False))
def test_quorum_blocks_agrees_only_what_quorum_providers_reported(data, rnd):
    """Each agreed block value was reported by >= quorum providers; provider order is irrelevant."""
    answers, quorum = data
    agreed = quorum_blocks(answers, quorum)
    for number, value in agreed.items():
        reporters = sum(1 for blocks in answers.values() if (blocks or {}).get(number) == value)
        assert reporters >= quorum
    names = list(answers)
    rnd.shuffle(names)
    assert quorum_blocks({name: answers[name] for name in names}, quorum) == agreed


def test_quorum_blocks_with_two_values_at_quorum_agrees_on_neither():
    """2-of-4 split evenly between two hashes: the block is disputed, not picked by order."""
    one, two = ("0x" + "11" * 32, 1000), ("0x" + "22" * 32, 1000)
    answers = {"a": {100: one}, "b": {100: one}, "c": {100: two}, "d": {100: two}}
    assert quorum_blocks(answers, 2) == {}
    answers["e"] = {100: two}
    assert quorum_blocks(answers, 2) == {}
    assert quorum_blocks(answers, 3) == {100: two}


def test_quorum_blocks_skips_failed_providers_and_minorities():
    """A failed provider or a lone disagreeing one does not block agreement."""
    good, bad = ("0x" + "11" * 32, 1000), ("0x" + "22" * 32, 1000)
    answers = {"a": {100: good, 101: good}, "b": {100: good}, "c": {100: bad}, "d": None}
    assert quorum_blocks(answers, 2) == {100: good}


def test_two_versions_of_one_log_reaching_quorum_are_both_held_back():
    """Quorum 2 of 4: two providers say value 1, two say value 2 for the same log."""
    one = make_transfer(value=1)
    two = make_transfer(value=2)
    result = quorum_logs({"a": [one], "b": [one], "c": [two], "d": [two]}, 2)
    assert result.ok and result.accepted == ()
    assert set(result.undecided) == {one, two}
    assert result.safe_through(200) == one.block_number - 1


# --- contradictions ---------------------------------------------------------------


@examples(100)
@given(answers_and_quorum())
def test_contradictions_blame_only_what_the_quorum_refutes(data):
    """A provider is blamed for each log it returned that is neither accepted nor still undecided,
    and for each accepted log it left out; when the quorum failed, nobody is blamed."""
    answers, quorum = data
    result = quorum_logs(answers, quorum)
    for logs in answers.values():
        if logs is None:
            continue
        blamed = contradictions(logs, result)
        if not result.ok:
            assert blamed == 0
            continue
        extra = set(logs) - set(result.accepted) - set(result.undecided)
        assert blamed == len(extra) + len(set(result.accepted) - set(logs))
        if set(logs) == set(result.accepted):
            assert blamed == 0


def test_the_honest_provider_with_an_undecided_log_is_not_blamed():
    """a has a log b lacks while c is down: undecided, so neither a nor b is blamed yet."""
    seen = make_transfer(block_number=103)
    result = quorum_logs({"a": [seen], "b": [], "c": None}, 2)
    assert contradictions([seen], result) == 0
    assert contradictions([], result) == 0
    liar = variant(seen, 5)
    result = quorum_logs({"a": [seen], "b": [seen], "c": [liar]}, 2)
    assert (contradictions([seen], result), contradictions([liar], result)) == (0, 2)
