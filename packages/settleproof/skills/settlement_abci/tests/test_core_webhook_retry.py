"""Retry rules: outcome classes, full-jitter backoff (monotone in expectation, bounded), Retry-After."""

import random
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.webhook_retry import (
    GROWTH,
    MAX_RETRY_DELAY_SECONDS,
    Backoff,
    Outcome,
    header,
    next_attempt_delay,
    outcome_of,
    retry_after_seconds,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import examples


backoffs = st.builds(
    Backoff,
    base_seconds=st.floats(0.5, 600),
    cap_seconds=st.floats(1, 7 * 86400),
)


@pytest.mark.parametrize(
    "status, outcome",
    [
        (200, Outcome.DELIVERED), (204, Outcome.DELIVERED), (299, Outcome.DELIVERED),
        (0, Outcome.RETRY), (301, Outcome.RETRY), (307, Outcome.RETRY), (408, Outcome.RETRY),
        (429, Outcome.RETRY), (500, Outcome.RETRY), (503, Outcome.RETRY), (599, Outcome.RETRY),
        (410, Outcome.GONE),
        (400, Outcome.REJECTED), (401, Outcome.REJECTED), (404, Outcome.REJECTED), (422, Outcome.REJECTED),
    ],
)
def test_outcomes_follow_the_contract(status: int, outcome: Outcome) -> None:
    """README: 2xx delivered; no reply, 408, 429, 5xx retried; 410 gone; other 4xx rejected."""
    assert outcome_of(status) is outcome


@examples(200)
@given(backoffs, st.integers(1, 40), st.integers(1, 40))
def test_backoff_window_is_monotone_and_bounded(backoff, first, second):
    """The window (twice the expected wait) never shrinks with more attempts and never exceeds the cap."""
    low, high = sorted((first, second))
    assert backoff.window(low) <= backoff.window(high) <= backoff.cap_seconds
    assert backoff.window(1) == pytest.approx(min(backoff.base_seconds, backoff.cap_seconds))
    if backoff.base_seconds * GROWTH ** (high - 1) < backoff.cap_seconds:
        assert backoff.window(high) == pytest.approx(backoff.base_seconds * GROWTH ** (high - 1))


@examples(100)
@given(backoffs, st.integers(1, 40), st.integers(0, 2**32))
def test_jittered_delay_stays_in_its_window(backoff, attempts, seed):
    """Full jitter: every delay lies in [0, window(n)], hence in [0, cap]."""
    random.seed(seed)
    delay = backoff.delay(attempts)
    assert 0 <= delay <= backoff.window(attempts) <= backoff.cap_seconds


def test_expected_delay_grows_until_the_cap() -> None:
    """Sampled means follow window/2: increasing with the attempt number, then flat at cap/2."""
    random.seed(7)
    backoff = Backoff(base_seconds=10, cap_seconds=2000)
    means = [sum(backoff.delay(n) for _ in range(4000)) / 4000 for n in range(1, 9)]
    for n, mean in enumerate(means, start=1):
        assert mean == pytest.approx(backoff.window(n) / 2, rel=0.06)
    assert all(a < b for a, b in zip(means[:4], means[1:5]))  # 10, 30, 90, 270, 810
    assert means[-1] == pytest.approx(1000, rel=0.06)  # capped: window 2000


@examples(100)
@given(backoffs, st.integers(1, 20), st.one_of(st.none(), st.floats(0, 10**6)), st.integers(0, 2**32))
def test_next_attempt_never_before_retry_after(backoff, attempts, retry_after, seed):
    """The wait is the jittered backoff, but at least what the merchant asked for (up to the cap),
    in whole seconds, and never beyond the cap."""
    random.seed(seed)
    delay = next_attempt_delay(attempts, backoff, retry_after)
    assert delay >= min(retry_after or 0, MAX_RETRY_DELAY_SECONDS)
    assert delay <= min(max(backoff.window(attempts), retry_after or 0) + 1, MAX_RETRY_DELAY_SECONDS)


def test_a_retry_after_of_years_is_capped() -> None:
    """A merchant's Retry-After cannot schedule a retry beyond the cap (the agents would refuse the report)."""
    assert next_attempt_delay(1, Backoff(), 10.0**9) == MAX_RETRY_DELAY_SECONDS


def test_retry_after_in_seconds_and_as_http_date() -> None:
    """Both RFC 9110 forms; a date in the past means now; garbage is ignored."""
    now = 1_700_000_000.0
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(" 0 ", now) == 0
    date = format_datetime(datetime.fromtimestamp(now + 90, tz=timezone.utc), usegmt=True)
    assert date.endswith("GMT")
    assert retry_after_seconds(date, now) == pytest.approx(90)
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:20", now + 30) == pytest.approx(0)  # naive: UTC
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0
    for value in (None, "", "soon", "-5", "1.5"):
        assert retry_after_seconds(value, now) is None


def test_header_lookup_is_case_insensitive() -> None:
    """Headers as the http protocol carries them: `Name: value` lines."""
    text = "Content-Type: application/json\r\nretry-after: 30\r\nX-Other: a: b\r\n"
    assert header(text, "Retry-After") == "30"
    assert header(text, "x-other") == "a: b"
    assert header(text, "Missing") is None
    assert header("", "Retry-After") is None
