"""Keeper choice: the same on every agent, fair over periods, and failover walks the ring."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.keeper import keeper_for
from packages.settleproof.skills.settlement_abci.tests.strategies import any_addresses, examples


participant_sets = st.lists(any_addresses, min_size=1, max_size=7, unique=True)
periods = st.integers(min_value=0, max_value=10**9)


@examples(100)
@given(participant_sets, periods, st.integers(0, 10), st.randoms(use_true_random=False))
def test_deterministic_and_independent_of_participant_order(participants, period, failovers, rnd):
    """Every agent names the same keeper, whatever order it holds the participants in."""
    expected = keeper_for(participants, period, failovers)
    shuffled = list(participants)
    rnd.shuffle(shuffled)
    assert keeper_for(shuffled, period, failovers) == expected
    assert keeper_for(tuple(shuffled) + tuple(shuffled), period, failovers) == expected
    assert keeper_for(iter(shuffled), period, failovers) == expected
    assert expected in participants


@examples(100)
@given(participant_sets, periods)
def test_every_participant_keeps_within_n_consecutive_periods(participants, start):
    """n consecutive periods name n different keepers: each agent exactly once."""
    n = len(participants)
    keepers = [keeper_for(participants, period) for period in range(start, start + n)]
    assert sorted(keepers) == sorted(participants)


@examples(100)
@given(participant_sets, periods, st.integers(0, 20))
def test_failover_moves_to_the_next_agent_in_order(participants, period, failovers):
    """Each failover is one step along sorted(participants); n failovers come back round."""
    ordered = sorted(participants)
    keeper = keeper_for(participants, period, failovers)
    following = keeper_for(participants, period, failovers + 1)
    assert ordered.index(following) == (ordered.index(keeper) + 1) % len(ordered)
    assert keeper_for(participants, period, failovers + len(ordered)) == keeper
    if len(ordered) > 1:
        assert following != keeper


def test_documented_rule():
    """sorted(participants)[(period + failovers) % n]."""
    agents = ["0xc", "0xa", "0xb"]
    assert [keeper_for(agents, p) for p in range(4)] == ["0xa", "0xb", "0xc", "0xa"]
    assert keeper_for(agents, 0, failovers=2) == "0xc"


def test_no_participants_is_an_error():
    """There is no keeper to name."""
    with pytest.raises(ValueError, match="no participants"):
        keeper_for([], 3)
