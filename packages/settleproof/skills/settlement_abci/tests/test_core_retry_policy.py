"""The retry policy: tenacity's stop and wait strategies, used as a decision and never as a loop."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.retry_policy import RetryPolicy
from packages.settleproof.skills.settlement_abci.tests.strategies import examples


policies = st.builds(
    RetryPolicy,
    attempts=st.integers(1, 6),
    budget_seconds=st.floats(0.0, 30.0),
    initial_seconds=st.floats(0.0, 2.0),
    max_wait_seconds=st.floats(0.0, 10.0),
    jitter_seconds=st.floats(0.0, 1.0),
)


@examples(200)
@given(policies, st.integers(1, 8), st.floats(0.0, 40.0))
def test_waits_grow_exponentially_within_bounds_and_stop_in_time(policy, attempt, elapsed):
    """Give up after `attempts` tries or once `budget_seconds` have passed since the first; otherwise
    wait min(initial * 2**(attempt-1) + jitter, max) seconds, jitter in [0, jitter_seconds]."""
    wait = policy.next_wait(attempt, 0.0, elapsed)
    if attempt >= policy.attempts or elapsed >= policy.budget_seconds:
        assert wait is None
        return
    assert wait is not None
    base = policy.initial_seconds * 2 ** (attempt - 1)
    assert min(base, policy.max_wait_seconds) <= wait + 1e-9
    assert wait <= min(base + policy.jitter_seconds, policy.max_wait_seconds) + 1e-9


def test_a_default_schedule():
    """3 attempts within 5 s: waits of about 0.25 s then 0.5 s, then give up."""
    policy = RetryPolicy()
    first = policy.next_wait(1, 0.0, 0.1)
    second = policy.next_wait(2, 0.0, 0.5)
    assert first is not None and 0.25 <= first <= 0.5
    assert second is not None and 0.5 <= second <= 0.75
    assert policy.next_wait(3, 0.0, 1.5) is None
    assert policy.next_wait(1, 0.0, 5.0) is None  # a first attempt that took the whole budget


@pytest.mark.parametrize(
    "settings",
    [{"attempts": 0}, {"budget_seconds": -1}, {"initial_seconds": -0.1}, {"max_wait_seconds": -1}, {"jitter_seconds": -1}],
)
def test_nonsense_is_refused(settings):
    """A policy that could never retry sensibly is a configuration error."""
    with pytest.raises(ValueError):
        RetryPolicy(**settings)
