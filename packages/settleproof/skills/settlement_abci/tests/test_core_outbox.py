"""Outbox transitions: enqueue once, deliver what is due, remove on 2xx, schedule retries, dead-letter."""

import json
import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.outbox import (
    EMPTY_DEAD_SUMMARY,
    MAX_ACKNOWLEDGEMENTS,
    MAX_ERROR,
    REDELIVERY_AFTER_SECONDS,
    DeliveryResult,
    OutboxEntry,
    OutboxPolicy,
    apply_results,
    attempt_result,
    close_acknowledged,
    due,
    dumps,
    dumps_processed,
    enqueue,
    load_dead_summary,
    load_entries,
    load_processed,
    load_results,
    retain,
    summarize_dead,
    used_transactions,
)
from packages.settleproof.skills.settlement_abci.webhook_retry import MAX_RETRY_DELAY_SECONDS, Backoff
from packages.settleproof.skills.settlement_abci.tests.strategies import examples, tx_hash
from packages.settleproof.skills.settlement_abci.webhook import WebhookEvent


T0 = 1_700_000_000
KEYS = [f"inv-{u}:{tx_hash(t)}" for u in "abc" for t in (1, 2)]
keys = st.sampled_from(KEYS)
events = st.builds(
    lambda key, n: WebhookEvent(key, json.dumps({"id": key, "n": n}), 100 + n), keys, st.integers(0, 3)
)
entries = st.lists(
    st.builds(
        OutboxEntry,
        id=keys,
        body=st.just('{"id":"x"}'),
        attempts=st.integers(0, 9),
        last_status=st.sampled_from([0, 500, 503]),
        last_error=st.sampled_from(["", "timeout"]),
        created_at=st.integers(T0 - 4 * 86400, T0),
        next_attempt_at=st.integers(T0 - 100, T0 + 100),
    ),
    unique_by=lambda e: e.id,
    max_size=5,
)
statuses = st.sampled_from([0, 200, 201, 204, 299, 300, 302, 400, 404, 408, 410, 422, 429, 500, 502, 503])
errors = st.sampled_from(["", "timeout", "x" * 300])
results = st.lists(
    st.builds(DeliveryResult, keys, statuses, errors, st.just(T0), st.integers(T0, T0 + 10**6)),
    unique_by=lambda r: r.id,
)
policies = st.builds(
    OutboxPolicy,
    max_attempts=st.integers(1, 10),
    client_error_attempts=st.integers(1, 5),
    max_age_seconds=st.sampled_from([3600, 72 * 3600]),
)


@examples(100)
@given(entries, st.dictionaries(keys, st.integers(0, 99)), st.lists(events, max_size=6))
def test_enqueue_marks_processed_and_enqueues_together_once(outbox, processed, new_events):
    """An event enters the outbox iff its id was not processed; then it is processed (with its
    payment's block), due at once."""
    queued, now_processed = enqueue(outbox, processed, new_events, T0)
    fresh = {e.id for e in new_events} - set(processed)
    assert set(now_processed) == set(processed) | fresh
    assert list(now_processed) == sorted(now_processed)
    first_block = {}
    for event in new_events:
        first_block.setdefault(event.id, event.block_number)
    assert now_processed == {**processed, **{key: first_block[key] for key in fresh}}
    assert {e.id for e in queued} == {e.id for e in outbox} | fresh
    ids = [e.id for e in queued]
    assert len(ids) == len(set(ids))
    first_body = {}
    for event in new_events:
        first_body.setdefault(event.id, event.body)
    for entry in queued:
        if entry.id in fresh:
            assert entry == OutboxEntry(entry.id, first_body[entry.id], created_at=T0, next_attempt_at=T0)
        else:
            assert entry in outbox
    again, processed_again = enqueue(queued, now_processed, new_events, T0 + 60)
    assert again == queued and processed_again == now_processed


@examples(100)
@given(entries, results, policies)
def test_apply_results(outbox, report, policy):
    """2xx acknowledges (the entry waits for its invoice to close); any other outcome counts an
    attempt and keeps id and body; the give-up rules of the README."""
    remaining, dead, delivered = apply_results(outbox, report, policy)
    by_id = {r.id: r for r in report}
    assert len(remaining) + len(dead) == len(outbox)
    for entry in outbox:
        result = by_id.get(entry.id)
        if result is None:
            assert entry in remaining
            continue
        if 200 <= result.status < 300:
            assert entry.id in delivered
            (after,) = [e for e in remaining if e.id == entry.id]
            assert after.acknowledgements == entry.acknowledgements + 1 and after.attempts == entry.attempts + 1
            assert after.next_attempt_at == result.attempted_at + REDELIVERY_AFTER_SECONDS
            continue
        (after,) = [e for e in remaining + dead if e.id == entry.id]
        assert (after.id, after.body, after.created_at) == (entry.id, entry.body, entry.created_at)
        assert after.attempts == entry.attempts + 1
        assert (after.last_status, after.last_error) == (result.status, result.error[:MAX_ERROR])
        assert after.last_attempt_at == result.attempted_at
        deadline = entry.created_at + policy.max_age_seconds
        assert after.next_attempt_at == min(max(result.retry_at, result.attempted_at), deadline)
        client_error = 400 <= result.status < 500 and result.status not in (408, 429)
        expected = (
            "" if result.status == 410 and entry.last_status != 410  # one keeper's 410: confirmed next
            else "gone" if result.status == 410
            else "rejected" if client_error and after.attempts >= policy.client_error_attempts
            else "max_attempts" if after.attempts >= policy.max_attempts
            else "max_age" if result.attempted_at >= entry.created_at + policy.max_age_seconds
            else ""
        )
        assert after.dead_reason == expected
        assert (after in dead) == bool(expected)


def test_retry_then_dead_letter_at_max_attempts():
    """A merchant answering 503 three times: the entry dies on the third of three attempts."""
    policy = OutboxPolicy(max_attempts=3)
    outbox = [OutboxEntry("inv-a:" + tx_hash(1), '{"id":"inv-a"}', created_at=T0, next_attempt_at=T0)]
    for attempt in range(3):
        now = T0 + 100 * attempt
        failure = [DeliveryResult(outbox[0].id, 503, "", now, now + 50)] if outbox else []
        outbox, dead, _ = apply_results(outbox, failure, policy)
        if attempt < 2:
            assert dead == [] and outbox[0].attempts == attempt + 1 and outbox[0].next_attempt_at == now + 50
    assert outbox == []
    assert dead == [
        OutboxEntry("inv-a:" + tx_hash(1), '{"id":"inv-a"}', 3, 503, "", T0, T0 + 250, T0 + 200, "max_attempts")
    ]


def test_gone_is_dead_lettered_at_the_confirming_attempt():
    """README: 410 = dead-lettered at once, once the next keeper's attempt (due at once) confirms it."""
    entry = OutboxEntry("inv-a:" + tx_hash(1), "{}", 1, 410)
    remaining, dead, _ = apply_results([entry], [DeliveryResult(entry.id, 410, "", T0)], OutboxPolicy())
    assert remaining == [] and [(d.id, d.attempts, d.dead_reason) for d in dead] == [(entry.id, 2, "gone")]


def test_other_4xx_is_dead_lettered_after_the_configured_attempts_but_429_and_408_retry():
    """Other 4xx die after `client_error_attempts` (here 2), well before max_attempts; 408/429 keep retrying."""
    policy = OutboxPolicy(max_attempts=10, client_error_attempts=2)
    for status, dies_after in ((400, 2), (404, 2), (422, 2), (408, None), (429, None)):
        outbox, dead, tries = [OutboxEntry("inv-a:" + tx_hash(1), "{}", created_at=T0)], [], 0
        while outbox and tries < 5:
            tries += 1
            outbox, dead, _ = apply_results(outbox, [DeliveryResult(outbox[0].id, status, "", T0)], policy)
        assert (tries if dead else None) == dies_after, status


def test_max_age_dead_letters_and_caps_the_schedule():
    """Retries never go past created + max age; a failed attempt at that age is the last one."""
    policy = OutboxPolicy(max_attempts=10, max_age_seconds=3600)
    entry = OutboxEntry("a:" + tx_hash(1), "{}", created_at=T0)
    remaining, dead, _ = apply_results([entry], [DeliveryResult(entry.id, 503, "", T0 + 3000, T0 + 9000)], policy)
    assert dead == [] and remaining[0].next_attempt_at == T0 + 3600
    remaining, dead, _ = apply_results(remaining, [DeliveryResult(entry.id, 503, "", T0 + 3600, T0 + 9000)], policy)
    assert remaining == [] and dead[0].dead_reason == "max_age"


def test_delivered_and_untouched():
    """A 2xx acknowledges the entry; an entry without a result is left exactly as it was."""
    sent, waiting = OutboxEntry("a:" + tx_hash(1), "{}", 4), OutboxEntry("b:" + tx_hash(2), "{}", 1, 500)
    remaining, dead, delivered = apply_results([sent, waiting], [DeliveryResult(sent.id, 204, "", T0)], OutboxPolicy(5))
    acknowledged = replace(sent, attempts=5, last_status=204, last_attempt_at=T0,
                           next_attempt_at=T0 + REDELIVERY_AFTER_SECONDS, acknowledgements=1)
    assert (remaining, dead, delivered) == ([acknowledged, waiting], [], [sent.id])


def test_a_false_acknowledgement_is_sent_again_and_a_true_one_closes() -> None:
    """A 2xx whose invoice the merchant still lists is due again after the grace, under the same id,
    at most MAX_ACKNOWLEDGEMENTS times in all; once the list no longer shows it, it leaves; a period
    that did not read the list (None) neither sends it nor lets it go."""
    entry = OutboxEntry("inv-a:" + tx_hash(1), "{}", created_at=T0, next_attempt_at=T0)
    outbox, _, _ = apply_results([entry], [DeliveryResult(entry.id, 200, "", T0)], OutboxPolicy())
    later = T0 + REDELIVERY_AFTER_SECONDS
    assert due(outbox, later - 1, open_invoices={"inv-a"}) == []
    assert [e.id for e in due(outbox, later, open_invoices={"inv-a"})] == [entry.id]
    assert due(outbox, later, open_invoices=None) == [] and due(outbox, later, open_invoices=set()) == []
    assert close_acknowledged(outbox, None) == (outbox, [])
    assert close_acknowledged(outbox, {"inv-a"}) == (outbox, [])
    assert close_acknowledged(outbox, {"inv-b"}) == ([], outbox)
    for n in range(2, MAX_ACKNOWLEDGEMENTS + 1):
        now = T0 + n * REDELIVERY_AFTER_SECONDS
        outbox, _, _ = apply_results(outbox, [DeliveryResult(entry.id, 200, "", now)], OutboxPolicy())
    assert due(outbox, T0 + 10**6, open_invoices={"inv-a"}) == []
    assert close_acknowledged(outbox, {"inv-a"}) == ([], outbox)


def test_an_acknowledged_copy_that_fails_is_dropped_not_dead_lettered() -> None:
    """The merchant acknowledged once; its resend dies of max attempts: no dead letter for it."""
    entry = OutboxEntry("inv-a:" + tx_hash(1), "{}", 9, 200, created_at=T0, acknowledgements=1)
    remaining, dead, _ = apply_results([entry], [DeliveryResult(entry.id, 503, "", T0, T0 + 5)], OutboxPolicy(10))
    assert (remaining, dead) == ([], [])


@examples(100)
@given(entries, st.integers(T0 - 200, T0 + 200), st.one_of(st.none(), st.integers(0, 6)))
def test_due_is_what_has_come_longest_waiting_first(outbox, now, limit):
    """Only entries whose time has come, oldest schedule first, at most `limit`."""
    chosen = due(outbox, now, limit)
    ready = [e for e in outbox if e.next_attempt_at <= now]
    assert len(chosen) == (len(ready) if limit is None else min(limit, len(ready)))
    assert all(e.next_attempt_at <= now for e in chosen)
    assert [e.next_attempt_at for e in chosen] == sorted(e.next_attempt_at for e in chosen)
    left = [e for e in ready if e not in chosen]
    if chosen:
        assert all(chosen[-1].next_attempt_at <= e.next_attempt_at for e in left)


@examples(100)
@given(
    st.integers(0, 12),
    st.sampled_from([0, 200, 204, 302, 400, 408, 410, 429, 500, 503]),
    st.one_of(st.none(), st.floats(0, 10**6)),
)
def test_attempt_result_schedules_failures_only(attempts, status, retry_after):
    """Delivered or gone: no next attempt. Otherwise after the backoff, never before Retry-After."""
    random.seed(attempts)
    backoff = Backoff(30, 3600)
    entry = OutboxEntry("a:" + tx_hash(1), "{}", attempts)
    result = attempt_result(entry, status, "e" * 500, retry_after, T0, backoff)
    assert (result.id, result.status, result.attempted_at) == (entry.id, status, T0)
    assert result.error == "e" * MAX_ERROR
    if 200 <= status < 300 or status == 410:
        assert result.retry_at == 0
    else:
        assert result.retry_at >= T0 + min(retry_after or 0, MAX_RETRY_DELAY_SECONDS)
        assert result.retry_at <= T0 + min(max(3600, retry_after or 0) + 1, MAX_RETRY_DELAY_SECONDS)


def test_used_transactions_are_the_tx_hashes_of_processed_keys():
    """Keys are `invoice_uuid:tx_hash`; a uuid may itself contain colons."""
    assert used_transactions([f"inv-a:{tx_hash(1)}", f"urn:inv:7:{tx_hash(2)}"]) == {tx_hash(1), tx_hash(2)}
    assert used_transactions([]) == set()


@examples(50)
@given(entries, results)
def test_serialisation_round_trips_canonically(outbox, report):
    """Agents store and vote on these bytes: sorted, canonical, lossless; older entries load with defaults."""
    assert load_entries(dumps(outbox)) == sorted(outbox)
    assert dumps(reversed(outbox)) == dumps(outbox)
    assert load_results(dumps(report)) == sorted(report)
    assert load_entries("") == [] and load_results("") == []
    old = '[{"attempts":2,"body":"{}","id":"a","last_error":"","last_status":503}]'
    assert load_entries(old) == [replace(OutboxEntry("a", "{}"), attempts=2, last_status=503)]


@examples(100)
@given(
    st.dictionaries(keys, st.integers(0, 2000)),
    st.one_of(st.none(), st.integers(0, 2000)),
    st.integers(1, 500),
    st.sets(st.sampled_from([f"inv-{u}" for u in "abcd"])),
)
def test_retain_keeps_the_window_and_open_invoices(processed, checkpoint, window, open_invoices):
    """Kept: every key before any checkpoint; after, exactly those of the last `window` blocks and
    those of invoices still open. Nothing is invented, blocks are unchanged."""
    kept = retain(processed, checkpoint, window, open_invoices)
    assert kept.items() <= processed.items()
    for key, block in processed.items():
        expected = checkpoint is None or block > checkpoint - window or key.split(":")[0] in open_invoices
        assert (key in kept) == expected


def test_processed_keys_round_trip_canonically() -> None:
    """The same keys give the same text whatever their order."""
    text = dumps_processed({"b:0x2": 7, "a:0x1": 5})
    assert text == '{"a:0x1":5,"b:0x2":7}'
    assert load_processed(text) == {"a:0x1": 5, "b:0x2": 7} and load_processed("") == {}


def test_the_dead_letter_summary_counts_and_chains_every_dead_letter() -> None:
    """Count and digest move with each batch of dead letters; no batch, no change; order of commits
    matters (the digest chains them); a malformed summary is a ValueError."""
    first, second = [OutboxEntry("a:" + tx_hash(1), "{}", 1, 410, dead_reason="gone")], [OutboxEntry("b:" + tx_hash(2), "{}", 10, 503, dead_reason="max_attempts")]
    one = summarize_dead(EMPTY_DEAD_SUMMARY, first)
    two = summarize_dead(one, second)
    assert load_dead_summary(one)[0] == 1 and load_dead_summary(two)[0] == 2
    assert summarize_dead(two, []) == two
    assert summarize_dead(summarize_dead(EMPTY_DEAD_SUMMARY, second), first) != two
    for bad in ("", "[]", '{"count":-1,"digest":""}', '{"count":true,"digest":""}', '{"count":1}'):
        with pytest.raises(ValueError):
            load_dead_summary(bad)


def test_one_keepers_410_is_confirmed_by_the_next_attempt() -> None:
    """A first 410 keeps the entry, due at once for the next keeper; a second in a row dead-letters it;
    a 410 after another answer starts over."""
    entry = OutboxEntry("inv-a:" + tx_hash(1), "{}", created_at=T0, next_attempt_at=T0)
    once, dead, _ = apply_results([entry], [DeliveryResult(entry.id, 410, "", T0)], OutboxPolicy())
    assert dead == [] and once[0].last_status == 410 and due(once, T0) == once
    twice, dead, _ = apply_results(once, [DeliveryResult(entry.id, 410, "", T0 + 5)], OutboxPolicy())
    assert twice == [] and [d.dead_reason for d in dead] == ["gone"]
    retried = replace(once[0], last_status=503)
    again, dead, _ = apply_results([retried], [DeliveryResult(entry.id, 410, "", T0 + 5)], OutboxPolicy())
    assert dead == [] and again[0].last_status == 410
