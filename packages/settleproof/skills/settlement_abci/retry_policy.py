"""When to retry a failed provider request, and after how long: tenacity decides, the caller waits.

Inside a behaviour nothing may block, so tenacity's `Retrying` never runs a
call here: its `stop` and `wait` strategies are used as a policy object,
called with a `RetryCallState` that describes the attempts made so far
(tenacity's documented strategy interface). The behaviour then waits with the
framework's `sleep`; tests drive the same policy with `asyncio.sleep`.
"""

from dataclasses import dataclass, field
from typing import Optional

from tenacity import (
    RetryCallState,
    Retrying,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` tries within `budget_seconds` of the first, exponential backoff with jitter.

    The n-th wait is `min(initial * 2**(n-1) + uniform(0, jitter), max_wait)` seconds.
    """

    attempts: int = 3
    budget_seconds: float = 5.0
    initial_seconds: float = 0.25
    max_wait_seconds: float = 2.0
    jitter_seconds: float = 0.25
    _retrying: Retrying = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Build tenacity's strategies once; refuse settings that make no sense."""
        if self.attempts < 1 or min(self.budget_seconds, self.initial_seconds) < 0:
            raise ValueError("a retry policy needs attempts >= 1 and non-negative times")
        if self.max_wait_seconds < 0 or self.jitter_seconds < 0:
            raise ValueError("a retry policy needs non-negative waits")
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.budget_seconds),
            wait=wait_exponential_jitter(
                multiplier=self.initial_seconds,
                max=self.max_wait_seconds,
                jitter=self.jitter_seconds,
            ),
        )
        object.__setattr__(self, "_retrying", retrying)

    def next_wait(self, attempt: int, first_sent: float, now: float) -> Optional[float]:
        """Seconds to wait before attempt `attempt + 1`, or None to give up.

        `attempt` is the number of the attempt that just failed (1 for the
        first), `first_sent` when the first one went out, `now` when this one
        failed; both in the same monotonic seconds.
        """
        state = RetryCallState(self._retrying, None, (), {})
        state.start_time = first_sent
        state.attempt_number = attempt
        state.outcome_timestamp = now
        if self._retrying.stop(state):
            return None
        return float(self._retrying.wait(state))
