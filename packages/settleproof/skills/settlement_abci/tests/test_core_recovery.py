"""Where a restarted service resumes (`recovery.resume_from`), and a simulated run with crashes.

The simulation drives the same pure cores the rounds use (derive the events,
enqueue, apply the delivery report, commit the next state, resume from the
stores) through any interleaving of periods, lost store writes and restarts of
every agent, and checks the promise of issue 6: the ids the merchant ever
acknowledged are exactly the payments that pay an invoice, no more, no fewer.
"""

import json
from dataclasses import dataclass, field, replace
from typing import List, Optional, Set

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.agreement import Agreement, Payment
from packages.settleproof.skills.settlement_abci.dedupe import derive_events
from packages.settleproof.skills.settlement_abci.matching import match
from packages.settleproof.skills.settlement_abci.outbox import (
    DeliveryResult,
    OutboxEntry,
    OutboxPolicy,
    apply_results,
    close_acknowledged,
    due,
    dumps,
    dumps_processed,
    enqueue,
    load_entries,
    load_processed,
    retain,
)
from packages.settleproof.skills.settlement_abci.recovery import (
    CommittedState,
    Decision,
    decide,
    resume_from,
    vouched_states,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    examples,
    make_invoice,
    make_transfer,
    tx_hash,
)


def state(seq: int, checkpoint: Optional[int], block_hash: str = "", keys: int = 0) -> CommittedState:
    """A committed state with `keys` processed keys."""
    processed = dumps_processed({f"inv-{n}:{tx_hash(n)}": n for n in range(keys)})
    return CommittedState(seq, checkpoint, block_hash, {"outbox": "[]", "dead_letters": "[]", "processed_keys": processed})


# --------------------------------------------------------------------------- CommittedState


def test_json_round_trip_and_digest_cover_every_field() -> None:
    """The JSON keeps everything; changing any field changes the digest."""
    original = state(3, 120, "0xab", keys=2)
    assert CommittedState.from_json(original.to_json()) == original
    variants = [replace(original, seq=4), replace(original, checkpoint=121), replace(original, checkpoint_hash="0xac"),
                replace(original, values={**original.values, "outbox": '[{"id":"x"}]'})]
    assert len({original.digest, *(v.digest for v in variants)}) == 5


@pytest.mark.parametrize(
    "text",
    ["", "not json", "{}", json.dumps({"seq": "x"}),
     state(3, 120).to_json().replace('"seq":3', '"seq":4')],  # edited without fixing the digest
)
def test_damaged_json_is_refused(text: str) -> None:
    """Anything that is not an intact committed state raises ValueError."""
    with pytest.raises(ValueError):
        CommittedState.from_json(text)


# --------------------------------------------------------------------------- resume_from


def test_everyone_agrees() -> None:
    """Four identical stores: resume from exactly that state."""
    stored = state(7, 120, "0x77", keys=3)
    assert resume_from([stored] * 4, 3, 4) == stored


def test_nothing_stored_anywhere_starts_afresh() -> None:
    """Only empty reports: None (the first scan starts as on a first start)."""
    assert resume_from([CommittedState()] * 4, 3, 4) is None


def test_a_state_only_one_agent_reports_is_not_trusted() -> None:
    """One agent claims a far newer state (forged, or the only survivor of a disk): not vouched."""
    honest = state(5, 100, "0x55")
    assert resume_from([state(9, 900, keys=9), honest, honest, honest], 3, 4) == honest


def test_newest_vouched_state_with_the_checkpoint_a_quorum_holds() -> None:
    """A crash during a Checkpoint round: two stored commit 8 (block 130), two commit 7 (block 120).
    Commit 8's events are kept, the checkpoint goes back to 120 with the hash two agents vouch for."""
    newer, older = state(8, 130, "0x88", keys=8), state(7, 120, "0x77", keys=7)
    resumed = resume_from([newer, older, newer, older], 3, 4)
    assert resumed == replace(newer, checkpoint=120, checkpoint_hash="0x77")


def test_lowered_checkpoint_with_an_unvouched_hash_is_unknown() -> None:
    """The only report at the lowered checkpoint names a hash nobody else does: "" (unknown), not a guess."""
    newer = state(8, 130, "0x88")
    resumed = resume_from([newer, newer, state(6, 110, "0x66"), CommittedState()], 3, 4)
    assert resumed == replace(newer, checkpoint=110, checkpoint_hash="")


def test_fewer_than_a_threshold_with_a_checkpoint_keeps_the_vouched_one() -> None:
    """Two fresh agents (empty stores) and two at commit 8: resume at 130 rather than jump to the head."""
    newer = state(8, 130, "0x88")
    assert resume_from([newer, newer, CommittedState(), CommittedState()], 3, 4) == newer


def test_lowering_stops_at_the_retention_window() -> None:
    """Two stores far behind (a write failure left unnoticed): the re-scan reaches back only as far
    as the processed keys do (10 blocks), never into blocks whose keys may be gone."""
    newer = state(8, 130, "0x88")
    resumed = resume_from([newer, newer, state(2, 60, "0x22"), state(2, 60, "0x22")], 3, 4, 10)
    assert resumed == replace(newer, checkpoint=120, checkpoint_hash="")


def test_single_agent_service() -> None:
    """n = 1, threshold 1: the agent's own store is the state."""
    stored = state(2, 40, "0x22")
    assert resume_from([stored], 1, 1) == stored


@examples(200)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=3, max_size=4),
)
def test_resume_never_beyond_a_quorum_and_never_loses_a_vouched_commit(reports_spec) -> None:  # type: ignore[no-untyped-def]
    """Committed states form a chain (commit k at block 100 + 10k). Whatever mix of commits the
    agents hold: the resumed checkpoint is at most what a threshold holds, its events are those of
    the newest commit two agents hold, and nothing older than every vouched commit is chosen."""
    chain = {k: state(k, 100 + 10 * k, f"0x{k:02x}", keys=k) for k in range(1, 5)}
    reports = [chain[k] if k else CommittedState() for k, _ in reports_spec]
    n, threshold = len(reports), len(reports) * 2 // 3 + 1
    resumed = resume_from(reports, threshold, n)
    counts = {k: sum(1 for r in reports if r.seq == k) for k in chain}
    vouched = [k for k, c in counts.items() if c >= n - threshold + 1]
    if not vouched:
        assert resumed is None
        return
    assert resumed is not None
    newest = chain[max(vouched)]
    assert resumed.values == newest.values and resumed.seq == newest.seq
    held = sorted((r.checkpoint for r in reports if r.checkpoint is not None), reverse=True)
    if len(held) >= threshold:
        assert resumed.checkpoint <= held[threshold - 1] or resumed.checkpoint == newest.checkpoint
        assert resumed.checkpoint <= newest.checkpoint


# --------------------------------------------------------------------------- a simulated service


INVOICES = tuple(make_invoice(uuid=f"inv-{i}", receiver="0x" + f"{0xB1:040x}", amount=10) for i in range(6))
POLICY = OutboxPolicy(max_attempts=10**6, max_age_seconds=10**9)  # nothing dead-letters here
AGENTS, THRESHOLD = 4, 3
WINDOW = 5  # blocks of processed keys kept in synchronized state
START_BLOCK = 1  # SETTLEPROOF_START_BLOCK, as production sets it: where a fresh start scans from


@dataclass
class Service:
    """Synchronized state (lost on a restart of everything), each agent's store (and the commit
    before, which a kill -9 may fall back to), and the merchant's inbox."""

    chain: List[Payment]
    head: int
    synced: CommittedState = field(default_factory=CommittedState)
    stores: List[CommittedState] = field(default_factory=lambda: [CommittedState()] * AGENTS)
    previous: List[CommittedState] = field(default_factory=lambda: [CommittedState()] * AGENTS)
    acknowledged: Set[str] = field(default_factory=set)
    clock: int = 1_700_000_000

    def period(self, merchant_up: bool, crash_before_commit: bool) -> None:
        """One period: scan up to 3 blocks, enqueue, deliver, then commit."""
        self.clock += 60
        start = START_BLOCK if self.synced.checkpoint is None else self.synced.checkpoint + 1
        to_block = min(self.head, start + 2)
        payments = tuple(p for p in self.chain if start <= p.transfer.block_number <= to_block)
        agreement = Agreement(start, to_block, payments, self.listed())
        processed = load_processed(self.synced.values["processed_keys"])
        events = derive_events(agreement, processed, 3).events
        outbox, processed = enqueue(load_entries(self.synced.values["outbox"]), processed, events, self.clock)
        if events:  # the Dedupe round's commit, stored before anything is POSTed
            self.commit(self.synced.successor(self.synced.checkpoint, self.synced.checkpoint_hash, {
                "outbox": dumps(outbox), "processed_keys": dumps_processed(processed)
            }))
        report = []
        listed = {i.uuid for i in agreement.invoices}
        for entry in due(outbox, self.clock, open_invoices=listed):  # the merchant acks only when up
            if merchant_up:
                self.acknowledged.add(entry.id)
            report.append(DeliveryResult(entry.id, 204 if merchant_up else 503, "", self.clock, self.clock + 1))
        if crash_before_commit:
            return
        remaining, dead, _ = apply_results(outbox, report, POLICY)
        remaining, _ = close_acknowledged(remaining, listed)
        assert not dead
        kept = retain(processed, to_block, WINDOW, {i.uuid for i in agreement.invoices})
        self.commit(self.synced.successor(to_block, f"0x{to_block:x}", {
            "outbox": dumps(remaining), "processed_keys": dumps_processed(kept)
        }))

    def commit(self, committed: CommittedState) -> None:
        """A round commits `committed` and every agent stores it."""
        self.synced = committed
        self.previous, self.stores = self.stores, [committed] * AGENTS

    def listed(self) -> tuple:
        """The merchant lists an invoice until it acknowledged a payment of it."""
        closed = {event_id.split(":")[0] for event_id in self.acknowledged}
        return tuple(i for i in INVOICES if i.uuid not in closed)

    def restart(self, lost_writes: Set[int], order: List[int], liar: bool) -> None:
        """Every agent is killed (those in `lost_writes` lose their last write) and restarts with an
        empty chain. RecoverState decides on the first threshold of reports, in `order`, or waits
        for the rest; with `liar`, the first agent in `order` reports a forged successor of its state
        whose outbox holds an event nobody paid."""
        self.stores = [self.previous[i] if i in lost_writes else self.stores[i] for i in range(AGENTS)]
        self.previous = list(self.stores)  # nothing is in flight any more: the next kill loses no more
        reports = [self.stores[i] for i in order]
        if liar:
            forged = dumps([OutboxEntry("forged:0xf", "{}")])
            reports[0] = reports[0].successor(10**6, "", {"outbox": forged})
        decision = decide(reports[:THRESHOLD], THRESHOLD, AGENTS, WINDOW)
        if decision.wait:
            decision = decide(reports, THRESHOLD, AGENTS, WINDOW)
        assert not decision.wait, decision
        self.synced = decision.state or CommittedState()  # afresh: from START_BLOCK

    def drain(self) -> None:
        """Run calm periods until the head is scanned and the outbox is empty."""
        for _ in range(100):
            if self.synced.checkpoint == self.head and self.synced.values["outbox"] == "[]":
                return
            self.period(True, False)
        raise AssertionError("the service never caught up")


steps = st.lists(
    st.one_of(
        st.tuples(st.just("period"), st.booleans(), st.booleans()),
        # Every commit reaches at least f + 1 = 2 stores: the others may lose it to the kill.
        st.tuples(st.just("restart"), st.sets(st.integers(0, AGENTS - 1), max_size=AGENTS - THRESHOLD + 1),
                  st.permutations(range(AGENTS)), st.booleans()),
    ),
    max_size=14,
)
chains = st.lists(
    st.tuples(st.integers(1, 12), st.integers(0, 5), st.sampled_from([5, 10, 20])), max_size=10
)


@examples(200)
@given(chains, steps)
def test_acknowledged_ids_are_exactly_the_matched_payments(chain_spec, script) -> None:  # type: ignore[no-untyped-def]
    """Whatever the interleaving of periods, merchant outages, crashes between delivery and
    checkpoint, and kills of every agent (up to two of them losing their last write, the service
    deciding on the first threshold of reports if it can, one of them possibly a liar's forgery): once the service catches
    up, the merchant has acknowledged exactly the ids `match` gives for the whole chain (never the
    forged one), although it closes each invoice as soon as it acknowledged a payment of it."""
    chain = [
        Payment(make_transfer(block_number=block, log_index=i, tx_hash=tx_hash(100 + i), value=value,
                              receiver="0x" + f"{0xB1:040x}", block_hash=tx_hash(block)), 1_700_000_000 + block)
        for i, (block, _, value) in enumerate(chain_spec)
    ]
    service = Service(chain, head=12)
    for step in script:
        if step[0] == "restart":
            _, lost_writes, order, liar = step
            service.restart(lost_writes, list(order), liar)
        else:
            _, merchant_up, crash = step
            service.period(merchant_up, crash)
    service.drain()
    expected = {s.key for s in match(INVOICES, [p.transfer for p in chain])}
    assert service.acknowledged == expected


# --------------------------------------------------------------------------- decide


def chained(n: int) -> List[CommittedState]:
    """Commits 1..n, each naming the one before as its parent."""
    states = [CommittedState()]
    for k in range(1, n + 1):
        states.append(states[-1].successor(100 + 10 * k, f"0x{k:02x}", state(k, None, keys=k).values))
    return states


def test_a_report_vouches_for_its_parent_too() -> None:
    """Commit 9's store vouches for commit 8; an unrelated state with seq 8 gets nothing from it."""
    states = chained(9)
    assert vouched_states([states[9], states[8]], 2) == [states[8]]
    assert vouched_states([states[9], state(8, 180)], 2) == []


def test_decide_waits_while_a_newer_state_may_be_vouched_for() -> None:
    """Three of four reports, one newer than the vouched: wait; all four: the newest vouched."""
    states = chained(9)
    waiting = decide([states[9], states[8], CommittedState()], 3, 4)
    assert waiting.wait and "commits [9]" in waiting.reason
    assert decide([states[9], states[8], CommittedState(), states[8]], 3, 4).state == states[8]
    assert decide([states[9], states[8], states[9]], 3, 4).state is not None


def test_decide_starts_afresh_only_when_nothing_can_be_vouched_for() -> None:
    """Nobody holds anything: afresh at once. One holder of four: afresh once all reported, saying so."""
    assert decide([CommittedState()] * 3, 3, 4) == Decision()
    lone = decide([state(9, 900), CommittedState(), CommittedState(), CommittedState()], 3, 4)
    assert lone.state is None and not lone.wait and "SETTLEPROOF_START_BLOCK" in lone.reason


def test_the_parent_is_part_of_the_digest_and_the_json() -> None:
    """A state names its parent, and changing it changes the digest."""
    child = chained(2)[2]
    assert CommittedState.from_json(child.to_json()) == child
    assert replace(child, parent="").digest != child.digest
