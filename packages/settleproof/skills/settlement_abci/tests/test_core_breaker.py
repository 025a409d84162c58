"""The circuit breaker's state machine, checked against a plain model of its specification."""

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from packages.settleproof.skills.settlement_abci.breaker import (
    Breaker,
    Breakers,
    BreakerState,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import examples


class BreakerMachine(RuleBasedStateMachine):
    """Random sequences of requests, outcomes and time steps; the model says what must happen.

    Model: closed counts consecutive failures and opens at the threshold; open
    refuses everything until the cool-down elapsed, then lets exactly one probe
    through (half-open), or another one a cool-down later if the first is never
    answered; the probe's success closes it, its failure reopens it with a fresh
    cool-down; a success anywhere resets the count.
    """

    @initialize(threshold=st.integers(1, 4), cooldown=st.sampled_from([0.0, 1.0, 5.0]))
    def start(self, threshold: int, cooldown: float) -> None:
        """A fresh breaker and its model."""
        self.breaker = Breaker(threshold, cooldown)
        self.threshold, self.cooldown = threshold, cooldown
        self.now = 100.0
        self.mode, self.opened_at, self.failures, self.probe_out = "closed", 0.0, 0, False
        self.probe_at = 0.0

    def model_state(self) -> BreakerState:
        """What the specification says the state is now."""
        if self.mode == "open" and self.now - self.opened_at >= self.cooldown:
            self.mode, self.probe_out = "half_open", False
        return {"closed": BreakerState.CLOSED, "open": BreakerState.OPEN}.get(self.mode, BreakerState.HALF_OPEN)

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 5.0]))
    def time_passes(self, seconds: float) -> None:
        """The clock moves on."""
        self.now += seconds

    @rule()
    def request(self) -> None:
        """Closed: always allowed. Open: never. Half-open: once until an outcome is recorded."""
        state = self.model_state()
        allowed = self.breaker.allow(self.now)
        if state is BreakerState.CLOSED:
            assert allowed
        elif state is BreakerState.OPEN:
            assert not allowed
        else:
            expired = self.probe_out and self.now - self.probe_at >= self.cooldown
            assert allowed == (not self.probe_out or expired)
            if allowed:
                self.probe_out, self.probe_at = True, self.now

    @rule()
    def success(self) -> None:
        """A useful reply closes the breaker and forgets the failures."""
        if self.model_state() is BreakerState.OPEN:
            return  # nothing is sent while open, so nothing can succeed
        self.breaker.success()
        self.mode, self.failures, self.probe_out = "closed", 0, False

    @rule()
    def failure(self) -> None:
        """A useless reply: in half-open it reopens at once, else it counts towards the threshold."""
        state = self.model_state()
        if state is BreakerState.OPEN:
            return
        self.breaker.failure(self.now)
        self.failures += 1
        if state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.mode, self.opened_at, self.probe_out = "open", self.now, False

    @invariant()
    def states_agree(self) -> None:
        """The breaker is in the model's state."""
        if hasattr(self, "breaker"):
            assert self.breaker.current(self.now) is self.model_state()


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = examples(100)


def test_opens_after_exactly_n_consecutive_failures() -> None:
    """Failures interrupted by a success do not add up."""
    breaker = Breaker(3, 10.0)
    for _ in range(2):
        breaker.failure(0.0)
    breaker.success()
    breaker.failure(1.0)
    breaker.failure(1.0)
    assert breaker.current(1.0) is BreakerState.CLOSED and breaker.allow(1.0)
    breaker.failure(2.0)
    assert breaker.current(2.0) is BreakerState.OPEN
    assert not breaker.allow(11.9)


def test_half_open_lets_one_probe_through_then_closes_or_reopens() -> None:
    """After the cool-down: one probe; success closes, failure reopens for a whole new cool-down."""
    breaker = Breaker(1, 10.0)
    breaker.failure(0.0)
    assert breaker.allow(10.0) and not breaker.allow(10.0)
    assert breaker.current(10.0) is BreakerState.HALF_OPEN
    breaker.failure(10.5)
    assert not breaker.allow(20.0) and breaker.allow(20.5)
    breaker.success()
    assert breaker.current(20.5) is BreakerState.CLOSED and breaker.allow(20.5) and breaker.allow(20.5)


def test_an_unanswered_probe_does_not_block_the_provider_forever() -> None:
    """A probe whose outcome never came (the period ended): another one a cool-down later."""
    breaker = Breaker(1, 10.0)
    breaker.failure(0.0)
    assert breaker.allow(10.0)
    assert not breaker.allow(19.9)
    assert breaker.allow(20.0) and not breaker.allow(20.0)


def test_breakers_are_per_provider_and_validated() -> None:
    """One breaker per name, shared settings; nonsense settings are refused up front."""
    breakers = Breakers(2, 5.0)
    breakers["a"].failure(0.0)
    breakers["a"].failure(0.0)
    assert breakers.states(1.0) == {"a": BreakerState.OPEN}
    assert breakers["b"].allow(1.0)
    assert breakers.states(1.0) == {"a": BreakerState.OPEN, "b": BreakerState.CLOSED}
    with pytest.raises(ValueError):
        Breakers(0, 5.0)
    with pytest.raises(ValueError):
        Breaker(1, -1.0)
