"""Circuit breaker per RPC provider: stop asking a provider that keeps failing, probe it later.

closed ──N consecutive failures──► open ──cool-down elapsed──► half-open
  ▲                                  ▲                            │
  └──────────── probe succeeded ─────┼──── probe failed ◄─────────┘

A failure is anything that makes a reply useless: no reply, an HTTP error, a
malformed reply, disagreement with the quorum, a head too far from the
others'. A probe whose outcome is never reported (its period ended first)
does not block the provider forever: another probe may go one cool-down
later. Time is passed in (monotonic seconds), so the state machine is pure
and the agent keeps one breaker per provider across periods.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Dict


class BreakerState(Enum):
    """Where a breaker is; the value is what the state gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class Breaker:
    """One provider's breaker: `allow` before each request, then `success` or `failure`."""

    failure_threshold: int
    cooldown_seconds: float
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    probing: bool = False
    probe_sent_at: float = 0.0

    def __post_init__(self) -> None:
        """Refuse settings that would never close or never open."""
        if self.failure_threshold < 1 or self.cooldown_seconds < 0:
            raise ValueError("a breaker needs failure_threshold >= 1 and cooldown_seconds >= 0")

    def current(self, now: float) -> BreakerState:
        """The state at `now`: an open breaker becomes half-open once its cool-down elapsed."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.cooldown_seconds:
            self.state, self.probing = BreakerState.HALF_OPEN, False
        return self.state

    def allow(self, now: float) -> bool:
        """Whether a request may go out now; half-open lets exactly one probe through."""
        state = self.current(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and (
            not self.probing or now - self.probe_sent_at >= self.cooldown_seconds
        ):
            self.probing, self.probe_sent_at = True, now
            return True
        return False

    def success(self) -> None:
        """A useful reply: close the breaker and forget earlier failures."""
        self.state, self.consecutive_failures, self.probing = BreakerState.CLOSED, 0, False

    def failure(self, now: float) -> None:
        """A useless reply: open after the threshold, or at once when the probe failed."""
        self.consecutive_failures += 1
        if (
            self.state is BreakerState.HALF_OPEN
            or self.consecutive_failures >= self.failure_threshold
        ):
            self.state, self.opened_at, self.probing = BreakerState.OPEN, now, False


class Breakers:
    """The breakers of every provider, created on first use with the same settings."""

    def __init__(self, failure_threshold: int, cooldown_seconds: float) -> None:
        """Settings shared by every provider's breaker."""
        Breaker(failure_threshold, cooldown_seconds)  # validate now, not on first use
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._breakers: Dict[str, Breaker] = {}

    def __getitem__(self, provider: str) -> Breaker:
        """The provider's breaker."""
        if provider not in self._breakers:
            self._breakers[provider] = Breaker(self.failure_threshold, self.cooldown_seconds)
        return self._breakers[provider]

    def states(self, now: float) -> Dict[str, BreakerState]:
        """Every known provider's state at `now`."""
        return {name: breaker.current(now) for name, breaker in sorted(self._breakers.items())}
