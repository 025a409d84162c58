"""The payload parsers: every honest payload passes, and anything else raises InvalidPayload, nothing else.

Honest payloads are built the way the behaviours build them (`Observation`,
`attempt_result`, `CommittedState`); hostile ones are drawn by hypothesis
from arbitrary JSON and text, and hand-made for each lie the keeper could tell.
"""

# pylint: disable=missing-function-docstring

import json
from typing import Any, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.agreement import Observation
from packages.settleproof.skills.settlement_abci.outbox import (
    MAX_ERROR,
    OutboxEntry,
    attempt_result,
    dumps,
)
from packages.settleproof.skills.settlement_abci.payload_checks import (
    InvalidPayload,
    parse_checkpoint,
    parse_dedupe,
    parse_delivery_report,
    parse_failover,
    parse_keeper,
    parse_observation,
    parse_recovery,
)
from packages.settleproof.skills.settlement_abci.recovery import CommittedState
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    chain_logs,
    examples,
    open_invoices,
    payment,
    tx_hash,
)
from packages.settleproof.skills.settlement_abci.webhook_retry import MAX_RETRY_DELAY_SECONDS, Backoff


NOW = 1_700_000_000
DUE = [OutboxEntry(f"inv-{n}:{tx_hash(n)}", "{}", attempts=n % 3) for n in range(4)]
DUE_IDS = [entry.id for entry in DUE]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
statuses = st.sampled_from([0, 200, 204, 301, 400, 404, 408, 410, 429, 500, 503])


def refused(parse: Any, *args: Any) -> InvalidPayload:
    with pytest.raises(InvalidPayload) as caught:
        parse(*args)
    return caught.value


# ------------------------------------------------------------------ the keeper's report


@examples(100)
@given(st.lists(st.tuples(st.sampled_from(range(4)), statuses, st.none() | st.floats(0, 10**9)),
                unique_by=lambda t: t[0]))
def test_every_honest_report_passes(attempts: List[Any]) -> None:
    """What the keeper builds with `attempt_result` at the round's block time always parses, unchanged."""
    results = [attempt_result(DUE[n], status, "e" * 300, retry_after, NOW, Backoff())
               for n, status, retry_after in attempts]
    assert parse_delivery_report(dumps(results), DUE_IDS, NOW) == sorted(results)


@examples(200)
@given(json_values)
def test_any_json_is_refused_or_parsed_never_raises_otherwise(value: Any) -> None:
    try:
        parse_delivery_report(json.dumps(value), DUE_IDS, NOW)
    except InvalidPayload:
        pass


@examples(100)
@given(st.text(max_size=50))
def test_any_text_is_refused_or_parsed(text: str) -> None:
    try:
        parse_delivery_report(text, DUE_IDS, NOW)
    except InvalidPayload:
        pass


def good(**changes: Any) -> str:
    item = {"id": DUE_IDS[0], "status": 503, "error": "", "attempted_at": NOW, "retry_at": NOW + 30, **changes}
    return json.dumps([item])


@pytest.mark.parametrize("text, reason", [
    ("x", "malformed"),
    ('[{"id": 1}]', "malformed"),
    ('{"id": "a"}', "malformed"),
    ("[" * 100_000 + "]" * 100_000, "malformed"),  # nests past Python's recursion limit
    (good(id="inv-9:" + tx_hash(9)), "unknown_event"),  # not due this round
    (good(attempted_at=NOW + 3600), "wrong_time"),  # a future attempt (to dead-letter by age)
    (good(attempted_at=NOW - 1), "wrong_time"),
    (good(status=200, retry_at=NOW + 5), "out_of_range"),
    (good(status=410, retry_at=NOW + 5), "out_of_range"),
    (good(status=42), "out_of_range"),
    (good(status=600), "out_of_range"),
    (good(status=True), "out_of_range"),
    (good(retry_at=NOW - 1), "out_of_range"),
    (good(retry_at=NOW + MAX_RETRY_DELAY_SECONDS + 1), "out_of_range"),  # parks the event for good
    (good(error="e" * (MAX_ERROR + 1)), "too_large"),
    (good(extra=1), "malformed"),
    (json.dumps(json.loads(good()) * 2), "duplicate"),
])
def test_each_lie_in_a_report_is_refused_with_its_reason(text: str, reason: str) -> None:
    assert refused(parse_delivery_report, text, DUE_IDS, NOW).reason == reason


def test_more_results_than_due_events_are_refused() -> None:
    assert refused(parse_delivery_report, good(), [], NOW).reason == "too_many"


def test_a_report_over_the_transaction_size_is_refused() -> None:
    assert refused(parse_delivery_report, " " * (2 << 20), DUE_IDS, NOW).reason == "too_large"


# ------------------------------------------------------------------ observations


@examples(100)
@given(chain_logs(), open_invoices(), st.sampled_from(["", tx_hash(99)]))
def test_every_honest_observation_passes(logs: List[Any], invoices: List[Any], anchor: str) -> None:
    observation = Observation(100, 110, tuple(payment(t) for t in logs), tuple(invoices), anchor)
    assert parse_observation(observation.to_json()) == Observation.from_json(observation.to_json())
    assert parse_observation(Observation(-1, 120).to_json()) == Observation(-1, 120)


@examples(200)
@given(json_values)
def test_any_json_observation_is_refused_or_parsed(value: Any) -> None:
    try:
        parse_observation(json.dumps(value))
    except InvalidPayload:
        pass


def test_impossible_observations_are_refused() -> None:
    base = json.loads(Observation(100, 110).to_json())
    assert refused(parse_observation, json.dumps({**base, "anchor_hash": "0xzz"})).reason == "malformed"
    assert refused(parse_observation, json.dumps({**base, "from_block": -7})).reason == "out_of_range"
    assert refused(parse_observation, json.dumps({**base, "to_block": 2**70})).reason == "out_of_range"
    block = [110, tx_hash(1), 1_700_000_000]
    outside = {**base, "blocks": [[120, tx_hash(1), 1]], "tokens": ["0x" + "a1" * 20],
               "payments": [[120, 0, tx_hash(2), 0, "0x" + "c3" * 20, "0x" + "b2" * 20, 5]]}
    assert refused(parse_observation, json.dumps(outside)).reason == "impossible"
    upper = {**outside, "blocks": [block], "payments": [[110, 0, tx_hash(2), 0, "0x" + "C3" * 20, "0x" + "b2" * 20, 5]]}
    assert refused(parse_observation, json.dumps(upper)).reason == "malformed"  # addresses are lower-case
    year_3000 = {**upper, "blocks": [[110, tx_hash(1), 32_503_680_000_000]],
                 "payments": [[110, 0, tx_hash(2), 0, "0x" + "c3" * 20, "0x" + "b2" * 20, 5]]}
    assert refused(parse_observation, json.dumps(year_3000)).reason == "out_of_range"
    long_uuid = {**base, "tokens": ["0x" + "a1" * 20], "invoices": [["u" * 129, 0, "0x" + "b2" * 20, "1", None, None]]}
    assert refused(parse_observation, json.dumps(long_uuid)).reason == "malformed"


# ------------------------------------------------------------------ the small payloads


def test_keeper_votes_name_participants() -> None:
    assert parse_keeper("agent_1", {"agent_0", "agent_1"}) == "agent_1"
    assert refused(parse_keeper, "mallory", {"agent_0"}).reason == "unknown_agent"
    assert refused(parse_keeper, ["agent_0"], {"agent_0"}).reason == "unknown_agent"
    assert parse_failover("agent_0", 2, {"agent_0", "agent_1"}) == 2
    assert refused(parse_failover, "agent_0", 3, {"agent_0", "agent_1"}).reason == "out_of_range"
    assert refused(parse_failover, "agent_0", -1, {"agent_0", "agent_1"}).reason == "out_of_range"


def test_digests_hashes_and_times_have_their_shape() -> None:
    parse_dedupe("ab" * 32, NOW)
    assert refused(parse_dedupe, "AB" * 32, NOW).reason == "malformed"
    assert refused(parse_dedupe, "ab" * 32, -1).reason == "out_of_range"
    parse_checkpoint(-1, "", "ab" * 32)
    parse_checkpoint(120, tx_hash(1), "ab" * 32)
    assert refused(parse_checkpoint, -2, "", "ab" * 32).reason == "out_of_range"
    assert refused(parse_checkpoint, 120, "0x12", "ab" * 32).reason == "malformed"
    assert refused(parse_checkpoint, 120, "", "x").reason == "malformed"


def test_infinity_where_a_number_goes_is_refused() -> None:
    """json.loads reads `Infinity`, and int() of it raises OverflowError: refused, not raised."""
    state = json.loads(CommittedState(3, 120).to_json())
    assert refused(parse_recovery, json.dumps({**state, "seq": float("inf")})).reason == "malformed"
    observation = json.loads(Observation(100, 110).to_json())
    assert refused(parse_observation, json.dumps({**observation, "to_block": float("inf")})).reason == "malformed"
    assert refused(parse_delivery_report, good(retry_at=float("inf")), DUE_IDS, NOW).reason == "out_of_range"


def test_recovery_reports_match_their_digest() -> None:
    state = CommittedState(3, 120, tx_hash(1))
    assert parse_recovery(state.to_json()) == state
    assert refused(parse_recovery, state.to_json().replace('"seq":3', '"seq":4')).reason == "malformed"
    assert refused(parse_recovery, "{").reason == "malformed"
    assert refused(parse_recovery, "[" * 100_000).reason == "malformed"
