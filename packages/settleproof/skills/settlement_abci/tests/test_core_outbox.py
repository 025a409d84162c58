"""Outbox transitions: enqueue once, remove on 2xx, count failures, dead-letter, never rewrite."""

import json

from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.outbox import (
    CLIENT_ERROR_ATTEMPTS,
    DeliveryResult,
    OutboxEntry,
    apply_results,
    dumps,
    enqueue,
    load_entries,
    load_results,
    used_transactions,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import examples, tx_hash
from packages.settleproof.skills.settlement_abci.webhook import WebhookEvent


KEYS = [f"inv-{u}:{tx_hash(t)}" for u in "abc" for t in (1, 2)]
keys = st.sampled_from(KEYS)
events = st.builds(lambda key, n: WebhookEvent(key, json.dumps({"id": key, "n": n})), keys, st.integers(0, 3))
entries = st.lists(
    st.builds(
        OutboxEntry,
        id=keys,
        body=st.just('{"id":"x"}'),
        attempts=st.integers(0, 9),
        last_status=st.sampled_from([0, 500, 503]),
        last_error=st.sampled_from(["", "timeout"]),
    ),
    unique_by=lambda e: e.id,
    max_size=5,
)
statuses = st.sampled_from([0, 200, 201, 204, 299, 300, 302, 400, 404, 408, 410, 422, 429, 500, 502, 503])
errors = st.sampled_from(["", "timeout", "x" * 300])
results = st.lists(st.builds(DeliveryResult, keys, statuses, errors), unique_by=lambda r: r.id)


@examples(100)
@given(entries, st.lists(keys, unique=True), st.lists(events, max_size=6))
def test_enqueue_marks_processed_and_enqueues_together_once(outbox, processed, new_events):
    """An event enters the outbox iff its id was not processed; then it is processed."""
    queued, now_processed = enqueue(outbox, processed, new_events)
    fresh = {e.id for e in new_events} - set(processed)
    assert set(now_processed) == set(processed) | fresh
    assert now_processed == sorted(now_processed)
    assert {e.id for e in queued} == {e.id for e in outbox} | fresh
    ids = [e.id for e in queued]
    assert len(ids) == len(set(ids))
    first_body = {}
    for event in new_events:
        first_body.setdefault(event.id, event.body)
    for entry in queued:
        if entry.id in fresh:
            assert entry == OutboxEntry(entry.id, first_body[entry.id])
        else:
            assert entry in outbox
    again, processed_again = enqueue(queued, now_processed, new_events)
    assert again == queued and processed_again == now_processed


@examples(100)
@given(entries, results, st.integers(min_value=1, max_value=10))
def test_apply_results(outbox, report, max_attempts):
    """2xx removes; any other outcome counts an attempt; dead-lettered at max_attempts, or at once on 410."""
    remaining, dead, delivered = apply_results(outbox, report, max_attempts)
    by_id = {r.id: r for r in report}
    assert len(remaining) + len(dead) + len(delivered) == len(outbox)
    for entry in outbox:
        result = by_id.get(entry.id)
        if result is None:
            assert entry in remaining
            continue
        if 200 <= result.status < 300:
            assert entry.id in delivered
            continue
        (after,) = [e for e in remaining + dead if e.id == entry.id]
        assert (after.id, after.body) == (entry.id, entry.body)
        assert after.attempts == entry.attempts + 1
        assert after.last_status == result.status
        assert after.last_error == result.error[:200]
        if result.status == 410:
            limit = 1
        elif 400 <= result.status < 500 and result.status not in (408, 429):
            limit = min(max_attempts, CLIENT_ERROR_ATTEMPTS)
        else:  # no reply, redirect, 408, 429, 5xx: retried with backoff
            limit = max_attempts
        assert (after in dead) == (after.attempts >= limit)
        assert (after in remaining) == (after.attempts < limit)


def test_retry_then_dead_letter_at_max_attempts():
    """A merchant answering 503 three times: the entry dies on the third of three attempts."""
    outbox = [OutboxEntry("inv-a:" + tx_hash(1), '{"id":"inv-a"}')]
    failure = [DeliveryResult(outbox[0].id, 503, "")]
    outbox, dead, _ = apply_results(outbox, failure, 3)
    outbox, dead, _ = apply_results(outbox, failure, 3)
    assert dead == [] and outbox[0].attempts == 2
    outbox, dead, delivered = apply_results(outbox, failure, 3)
    assert outbox == [] and delivered == []
    assert dead == [OutboxEntry("inv-a:" + tx_hash(1), '{"id":"inv-a"}', 3, 503, "")]


def test_gone_is_dead_lettered_at_once():
    """CONTRACTS.md: 410 = dead-lettered at once."""
    entry = OutboxEntry("inv-a:" + tx_hash(1), "{}")
    remaining, dead, _ = apply_results([entry], [DeliveryResult(entry.id, 410)], 10)
    assert remaining == [] and [d.id for d in dead] == [entry.id]


def test_other_4xx_is_dead_lettered_after_a_few_attempts_but_429_and_408_retry():
    """CONTRACTS.md: other 4xx are dead-lettered after a few attempts, well before max_attempts."""
    for status, expected_dead in ((400, True), (404, True), (422, True), (408, False), (429, False)):
        outbox = [OutboxEntry("inv-a:" + tx_hash(1), "{}")]
        for _ in range(5):
            outbox, dead, _ = apply_results(outbox, [DeliveryResult(outbox[0].id, status)], 10)
            if dead:
                break
        assert bool(dead) == expected_dead, status


def test_delivered_and_untouched():
    """A 2xx removes the entry; an entry without a result is left exactly as it was."""
    sent, waiting = OutboxEntry("a:" + tx_hash(1), "{}", 4), OutboxEntry("b:" + tx_hash(2), "{}", 1, 500)
    remaining, dead, delivered = apply_results([sent, waiting], [DeliveryResult(sent.id, 204)], 5)
    assert (remaining, dead, delivered) == ([waiting], [], [sent.id])


def test_used_transactions_are_the_tx_hashes_of_processed_keys():
    """Keys are `invoice_uuid:tx_hash`; a uuid may itself contain colons."""
    assert used_transactions([f"inv-a:{tx_hash(1)}", f"urn:inv:7:{tx_hash(2)}"]) == {tx_hash(1), tx_hash(2)}
    assert used_transactions([]) == set()


@examples(50)
@given(entries, results)
def test_serialisation_round_trips_canonically(outbox, report):
    """Agents store and vote on these bytes: sorted, canonical, lossless."""
    assert load_entries(dumps(outbox)) == sorted(outbox)
    assert dumps(reversed(outbox)) == dumps(outbox)
    assert load_results(dumps(report)) == sorted(report)
    assert load_entries("") == [] and load_results("") == []
