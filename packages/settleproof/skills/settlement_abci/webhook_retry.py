"""Retry rules of webhook attempts: what a reply means, and how long to wait before the next one.

Pure functions, so the keeper's decisions can be tested without a network. The
keeper turns each reply into a next attempt time on block time
(`outbox.attempt_result`) and reports it; every agent then applies the agreed
report with the same rules (`outbox.apply_results`).
"""

import email.utils
import math
from dataclasses import dataclass
from datetime import timezone
from enum import Enum
from types import SimpleNamespace
from typing import Optional, cast

from tenacity import RetryCallState
from tenacity.wait import wait_exponential, wait_random_exponential


GONE = 410
#: 4xx statuses that mean "later", not "never" (README).
RETRIED_CLIENT_ERRORS = frozenset({408, 429})
#: Each retry window is this many times the previous one (Svix and Stripe grow their
#: schedules about this fast; with 30 s and 10 attempts the expected span is about half a day).
GROWTH = 3.0


class Outcome(Enum):
    """What one attempt means for the event; the values double as metric labels."""

    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # no reply (timeout, connection error), 3xx, 408, 429, 5xx
    GONE = "gone"  # 410: the endpoint asks us to stop, dead-lettered at once
    REJECTED = "rejected"  # other 4xx: dead-lettered after a few attempts


def outcome_of(status: int) -> Outcome:
    """Classify a reply; status 0 stands for "no reply" (timeout or connection error)."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == GONE:
        return Outcome.GONE
    if 400 <= status < 500 and status not in RETRIED_CLIENT_ERRORS:
        return Outcome.REJECTED
    return Outcome.RETRY


def _attempt(number: int) -> RetryCallState:
    """The one field tenacity's wait policies read: the 1-based attempt number."""
    return cast(RetryCallState, SimpleNamespace(attempt_number=max(1, number)))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (tenacity's `wait_random_exponential`).

    After the n-th failed attempt the wait is uniform in [0, window(n)], where
    window(n) = min(base * GROWTH**(n-1), cap): spread out, so a recovering
    merchant is not hit by every event at once, and never longer than `cap`.
    """

    base_seconds: float = 30.0
    cap_seconds: float = 12 * 3600.0

    def window(self, attempts: int) -> float:
        """The upper bound of the wait after `attempts` failed attempts (its expectation is half of it)."""
        policy = wait_exponential(self.base_seconds, self.cap_seconds, GROWTH)
        return float(policy(_attempt(attempts)))

    def delay(self, attempts: int) -> float:
        """A random wait after `attempts` failed attempts."""
        policy = wait_random_exponential(self.base_seconds, self.cap_seconds, GROWTH)
        return float(policy(_attempt(attempts)))


def retry_after_seconds(value: Optional[str], wall_now: float) -> Optional[float]:
    """A `Retry-After` value (delay-seconds or HTTP-date) as seconds from now; None if absent or invalid."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - wall_now)


def header(headers: str, name: str) -> Optional[str]:
    """One header from the http protocol's `Name: value` lines (case-insensitive), or None."""
    wanted = name.lower()
    for line in headers.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == wanted:
            return value.strip()
    return None


#: No retry is scheduled further out than this (the default webhook_max_age_seconds), whatever the
#: merchant's `Retry-After` says: the agents refuse a report that schedules one later.
MAX_RETRY_DELAY_SECONDS = 72 * 3600


def next_attempt_delay(attempts: int, backoff: Backoff, retry_after: Optional[float]) -> int:
    """Whole seconds until the next attempt: the jittered backoff, but never before `Retry-After`
    (itself capped at `MAX_RETRY_DELAY_SECONDS`)."""
    return int(math.ceil(min(max(backoff.delay(attempts), retry_after or 0.0), MAX_RETRY_DELAY_SECONDS)))
