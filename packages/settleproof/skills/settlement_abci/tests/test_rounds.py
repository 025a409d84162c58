"""Tests of the settlement rounds, with the framework's round test tools.

Every test states the payload each of the four participants sends
(`agent_0`..`agent_3`, consensus threshold 3, as `BaseRoundTestClass` sets up)
and the synchronized data the round must leave behind.
"""

# pylint: disable=protected-access,too-few-public-methods

import hashlib
import json
from copy import deepcopy
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional
from unittest.mock import MagicMock

import pytest

from packages.settleproof.skills.settlement_abci.agreement import (
    Agreement,
    Observation,
    Payment,
)
from packages.settleproof.skills.settlement_abci.invoices import Invoice
from packages.settleproof.skills.settlement_abci.outbox import (
    EMPTY_DEAD_SUMMARY,
    REDELIVERY_AFTER_SECONDS,
    DeliveryResult,
    OutboxEntry,
    OutboxPolicy,
    dumps,
    dumps_processed,
    load_processed,
)
from packages.settleproof.skills.settlement_abci.payloads import (
    CheckpointPayload,
    DedupePayload,
    DeliverWebhookPayload,
    FetchLogsQuorumPayload,
    KeeperFailoverPayload,
    RecoverStatePayload,
    SelectKeeperPayload,
)
from packages.settleproof.skills.settlement_abci.rounds import (
    CheckpointRound,
    DedupeRound,
    DeliverWebhookRound,
    Event,
    LATE_PAYLOAD_BLOCKS,
    FetchLogsQuorumRound,
    FinishedSettlementRound,
    KeeperFailoverRound,
    SelectKeeperRound,
    SettlementAbciApp,
    SynchronizedData,
    RETRY_TRANSITIONS,
    RecoverStateRound,
    checkpoint_vote,
    committed_checkpoint,
    next_block,
    next_state,
)
from packages.settleproof.skills.settlement_abci import settings_digest
from packages.settleproof.skills.settlement_abci.dedupe import derive_events
from packages.settleproof.skills.settlement_abci.recovery import CommittedState
from packages.settleproof.skills.settlement_abci.transfers import Transfer
from packages.valory.skills.abstract_round_abci.base import (
    AbciAppDB,
    BaseTxPayload,
    TransactionNotValidError,
)
from packages.valory.skills.abstract_round_abci.test_tools.rounds import (
    BaseCollectDifferentUntilThresholdRoundTest,
    BaseCollectSameUntilThresholdRoundTest,
    BaseOnlyKeeperSendsRoundTest,
)


TOKEN = "0x" + "a1" * 20
RECEIVER = "0x" + "b2" * 20
PAYER = "0x" + "c3" * 20


def tx_hash(n: int) -> str:
    """A distinct transaction hash."""
    return "0x" + f"{n:064x}"


def block_hash(number: int) -> str:
    """A distinct block hash per block number."""
    return "0x" + f"{0xB10C0000 + number:064x}"


def make_invoice(uuid: str = "inv-1", amount: int = 1000, **kwargs: Any) -> Invoice:
    """An open invoice for TOKEN paid to RECEIVER."""
    return Invoice(uuid=uuid, token=TOKEN, receiver=RECEIVER, amount=amount, **kwargs)


def make_transfer(block: int, n: int = 1, value: int = 1000, log_index: int = 0) -> Transfer:
    """A Transfer log of TOKEN from PAYER to RECEIVER."""
    return Transfer(
        block_number=block,
        log_index=log_index,
        tx_hash=tx_hash(n),
        block_hash=block_hash(block),
        token=TOKEN,
        sender=PAYER,
        receiver=RECEIVER,
        value=value,
    )


def make_payment(block: int, n: int = 1, value: int = 1000) -> Payment:
    """A payment with a deterministic block timestamp."""
    return Payment(make_transfer(block, n, value), 1_700_000_000 + block)


#: The block time that started the rounds under test (unix seconds).
NOW = 1_700_000_000


def context_at(now: int = NOW) -> MagicMock:
    """A mocked skill context whose round started with a block at `now`."""
    context = MagicMock()
    context.state.round_sequence.last_round_transition_timestamp = datetime.fromtimestamp(now, tz=timezone.utc)
    return context


def round_of(round_cls: Callable, data: SynchronizedData, now: int = NOW) -> Any:
    """A round over `data` with a mocked skill context, started by a block at `now`."""
    return round_cls(synchronized_data=data, context=context_at(now))


def same_payloads(participants: FrozenSet[str], build: Callable[[str], BaseTxPayload]) -> Dict[str, BaseTxPayload]:
    """One payload per participant, in sorted order."""
    return {p: build(p) for p in sorted(participants)}


def ends_with(round_obj: Any, payloads: Dict[str, BaseTxPayload]) -> Any:
    """Feed every payload as DeliverTx does (refused ones are left out), then return end_block's result."""
    for payload in payloads.values():
        try:
            round_obj.check_payload(payload)
        except TransactionNotValidError:
            continue
        round_obj.process_payload(payload)
    return round_obj.end_block()


def ends_after_late_blocks(round_obj: Any, payloads: Dict[str, BaseTxPayload]) -> Any:
    """`ends_with` for a round still missing payloads: it must wait `LATE_PAYLOAD_BLOCKS` blocks past
    the threshold for them, and end at the next."""
    for _ in range(LATE_PAYLOAD_BLOCKS):
        assert ends_with(round_obj, payloads) is None
        payloads = {}
    result = round_obj.end_block()
    assert result is not None
    return result


class SettlementRoundTestMixin:
    """Our synchronized data and events for the framework's round test classes."""

    _synchronized_data_class = SynchronizedData
    _event_class = Event
    synchronized_data: SynchronizedData
    participants: FrozenSet[str]

    def set_data(self, **values: Any) -> SynchronizedData:
        """Store values in the db of this test's synchronized data."""
        self.synchronized_data = SynchronizedData(self.synchronized_data.db)
        self.synchronized_data.db.update(**values)
        return self.synchronized_data

    @property
    def agents(self) -> List[str]:
        """The participants in keeper order."""
        return sorted(self.participants)


# --------------------------------------------------------------------------- SelectKeeper


class TestSelectKeeperRound(SettlementRoundTestMixin, BaseCollectSameUntilThresholdRoundTest):
    """SelectKeeperRound: all agents name `sorted(participants)[period % n]`."""

    def test_done(self) -> None:
        """Four agents vote agent_0 (period 0): the keeper is stored and failovers reset to 0."""
        self.set_data(keeper_failovers=3)  # left over from an earlier period
        keeper = self.agents[0]
        payloads = same_payloads(self.participants, lambda p: SelectKeeperPayload(p, keeper))
        test_round = round_of(SelectKeeperRound, self.synchronized_data)

        def expected(data: SynchronizedData, round_: SelectKeeperRound) -> SynchronizedData:
            return data.update(
                participant_to_votes=round_.serialized_collection,
                most_voted_keeper_address="agent_0",
                keeper_failovers=0,
            )

        self._complete_run(
            self._test_round(
                test_round=test_round,
                round_payloads=payloads,
                synchronized_data_update_fn=expected,
                synchronized_data_attr_checks=[
                    lambda d: d.most_voted_keeper_address,
                    lambda d: d.keeper_failovers,
                    lambda d: d.participant_to_votes,
                ],
                most_voted_payload="agent_0",
                exit_event=Event.DONE,
            )
        )

    def test_votes_for_another_keeper_are_refused(self) -> None:
        """Each agent names itself: only agent_0 (the keeper of period 0) is a valid vote, the others
        are refused at the door and counted, so nobody else can be elected: the round waits."""
        test_round = round_of(SelectKeeperRound, self.synchronized_data)
        payloads = {p: SelectKeeperPayload(p, p) for p in self.agents}
        assert ends_with(test_round, payloads) is None
        assert list(test_round.collection) == ["agent_0"]
        refused = test_round.context.metrics.consensus.byzantine_payloads.labels
        assert sorted(call.args for call in refused.call_args_list) == [("select_keeper_round", "wrong_keeper")] * 3

    def test_two_of_four_is_not_enough(self) -> None:
        """Two votes for agent_0 and two missing: no decision yet."""
        test_round = round_of(SelectKeeperRound, self.synchronized_data)
        for agent in self.agents[:2]:
            test_round.process_payload(SelectKeeperPayload(agent, "agent_0"))
        assert test_round.end_block() is None


# --------------------------------------------------------------------------- FetchLogsQuorum


class TestFetchLogsQuorumRound(SettlementRoundTestMixin, BaseCollectDifferentUntilThresholdRoundTest):
    """FetchLogsQuorumRound: the agreement is derived from the collected observations."""

    def run_round(
        self, observations: Dict[str, Observation], expected_agreement: Agreement
    ) -> None:
        """Run the framework's test with one observation per agent and check the stored agreement."""
        payloads = {
            agent: FetchLogsQuorumPayload(agent, obs.to_json()) for agent, obs in observations.items()
        }
        test_round = round_of(FetchLogsQuorumRound, self.synchronized_data)

        def expected(data: SynchronizedData, round_: FetchLogsQuorumRound) -> SynchronizedData:
            return data.update(
                participant_to_observation=round_.serialized_collection,
                agreement=expected_agreement.to_json(),
            )

        self._complete_run(
            self._test_round(
                test_round=test_round,
                round_payloads=payloads,
                synchronized_data_update_fn=expected,
                synchronized_data_attr_checks=[
                    lambda d: d.agreement,
                    lambda d: d.participant_to_observation,
                ],
                exit_event=Event.DONE,
            )
        )

    def test_done_agrees_on_payment_seen_by_a_quorum(self) -> None:
        """Checkpoint 99: three agents scanned 100..110 and saw one payment; the fourth stopped at 108."""
        self.set_data(checkpoint=99)
        invoice = make_invoice()
        payment = make_payment(105)
        full = Observation(100, 110, (payment,), (invoice,))
        behind = Observation(100, 108, (), (invoice,))
        self.run_round(
            {"agent_0": full, "agent_1": full, "agent_2": behind, "agent_3": full},
            Agreement(100, 110, (payment,), (invoice,)),
        )

    def test_payment_seen_by_a_minority_is_rejected(self) -> None:
        """All four agents watched the receiver, only two saw the payment: it can never reach 3, the range goes on."""
        self.set_data(checkpoint=99)
        invoice = make_invoice()
        seen = Observation(100, 110, (make_payment(105),), (invoice,))
        not_seen = Observation(100, 110, (), (invoice,))
        self.run_round(
            {"agent_0": seen, "agent_1": seen, "agent_2": not_seen, "agent_3": not_seen},
            Agreement(100, 110, (), (invoice,)),
        )

    def test_undecided_payment_stops_the_range_before_it(self) -> None:
        """Two of three watching agents saw block 105's payment, the 4th could not read invoices: stop at 104."""
        self.set_data(checkpoint=99)
        invoice = make_invoice()
        seen = Observation(100, 110, (make_payment(105),), (invoice,))
        not_seen = Observation(100, 110, (), (invoice,))
        no_invoices = Observation(100, 99, (), None)
        self.run_round(
            {"agent_0": seen, "agent_1": no_invoices, "agent_2": seen, "agent_3": not_seen},
            Agreement(100, 104, (), (invoice,)),
        )

    def test_invoices_unavailable_to_most_agents_agrees_on_nothing(self) -> None:
        """Two agents could not read the invoices: the agreement is the empty range at 100."""
        self.set_data(checkpoint=99)
        ok = Observation(100, 110, (), (make_invoice(),))
        no_invoices = Observation(100, 99, (), None)
        self.run_round(
            {"agent_0": ok, "agent_1": no_invoices, "agent_2": ok, "agent_3": no_invoices},
            Agreement(100, 99),
        )

    def test_first_start_agrees_on_empty_range_at_safe_head(self) -> None:
        """No checkpoint yet and no start block: the 3rd highest safe head (497) starts an empty range."""
        assert self.synchronized_data.checkpoint is None
        heads = {"agent_0": 500, "agent_1": 450, "agent_2": 497, "agent_3": 498}
        self.run_round(
            {agent: Observation(-1, head, (), (make_invoice(),)) for agent, head in heads.items()},
            Agreement(497, 496),
        )

    def test_first_start_before_the_chain_is_deep_enough(self) -> None:
        """Safe heads still negative (head < confirmations): nothing is agreed, not even a start."""
        heads = {"agent_0": 3, "agent_1": -2, "agent_2": -5, "agent_3": -1}
        self.run_round(
            {agent: Observation(-1, head, (), ()) for agent, head in heads.items()},
            Agreement(-1, -2),
        )

    def test_first_start_from_configured_start_block(self) -> None:
        """SETTLEPROOF_START_BLOCK=50 on every agent: the first scan covers 50.. instead of stalling."""
        invoice = make_invoice()
        payment = make_payment(55)
        observation = Observation(50, 60, (payment,), (invoice,))
        self.run_round(
            {agent: observation for agent in self.agents},
            Agreement(50, 60, (payment,), (invoice,)),
        )

    def test_anchor_confirmed_by_a_threshold_scans_on(self) -> None:
        """The stored checkpoint hash is confirmed by three agents (one could not tell): scan as usual."""
        self.set_data(checkpoint=99, checkpoint_hash=block_hash(99))
        invoice, payment = make_invoice(), make_payment(105)
        seen = Observation(100, 110, (payment,), (invoice,), anchor_hash=block_hash(99))
        self.run_round(
            {"agent_0": seen, "agent_1": seen, "agent_2": replace(seen, anchor_hash=""), "agent_3": seen},
            Agreement(100, 110, (payment,), (invoice,)),
        )

    def test_a_malformed_observation_counts_as_none(self) -> None:
        """One agent sends garbage: the three others are still a threshold and agree; nothing raises."""
        self.set_data(checkpoint=99)
        good = Observation(100, 110, (make_payment(105),), (make_invoice(),))
        payloads = {agent: FetchLogsQuorumPayload(agent, good.to_json()) for agent in self.agents[:3]}
        payloads[self.agents[3]] = FetchLogsQuorumPayload(self.agents[3], '{"payments": "all of them"}')
        data, event = ends_after_late_blocks(round_of(FetchLogsQuorumRound, self.synchronized_data), payloads)
        assert event == Event.DONE
        assert data.agreement == Agreement(100, 110, (make_payment(105),), (make_invoice(),))

    def anchored_end(self, hashes: List[str]) -> Any:
        """end_block's result when the agents report these anchor hashes for checkpoint 99."""
        self.set_data(checkpoint=99, checkpoint_hash=block_hash(99))
        observation = Observation(100, 110, (make_payment(105),), (make_invoice(),))
        payloads = {
            agent: FetchLogsQuorumPayload(agent, replace(observation, anchor_hash=h).to_json())
            for agent, h in zip(self.agents, hashes)
        }
        return ends_with(round_of(FetchLogsQuorumRound, self.synchronized_data), payloads)

    def test_deep_reorg_halts_and_names_the_block(self) -> None:
        """Three agents' providers now give block 99 another hash: REORG_DETECTED, nothing scanned."""
        other = "0x" + "ee" * 32
        data, event = self.anchored_end([other, other, other, block_hash(99)])
        assert event == Event.REORG_DETECTED
        assert data.reorg_block == 99
        assert data.agreement == Agreement(100, 99)

    def test_undecided_anchor_scans_nothing_but_goes_on(self) -> None:
        """Two confirm, two deny: neither is a threshold, so nothing is scanned and nothing is halted."""
        other = "0x" + "ee" * 32
        data, event = self.anchored_end([other, other, block_hash(99), block_hash(99)])
        assert event == Event.DONE
        assert data.reorg_block is None
        assert data.agreement == Agreement(100, 99)

    def test_waits_for_threshold(self) -> None:
        """Two observations are not a threshold: end_block returns None."""
        test_round = round_of(FetchLogsQuorumRound, self.set_data(checkpoint=99))
        for agent in self.agents[:2]:
            test_round.process_payload(
                FetchLogsQuorumPayload(agent, Observation(100, 99, (), ()).to_json())
            )
        assert test_round.end_block() is None

    def test_a_fast_liar_in_the_first_threshold_decides_nothing(self) -> None:
        """The liar's observation (no payment) arrives with two honest ones: the round waits for the
        fourth instead of stopping before the payment, and agrees on what the three honest saw."""
        self.set_data(checkpoint=99)
        honest = Observation(100, 110, (make_payment(105),), (make_invoice(),))
        liar = replace(honest, payments=())
        test_round = round_of(FetchLogsQuorumRound, self.synchronized_data)
        first = {"agent_3": FetchLogsQuorumPayload("agent_3", liar.to_json())}
        first.update({a: FetchLogsQuorumPayload(a, honest.to_json()) for a in self.agents[:2]})
        assert ends_with(test_round, first) is None
        last = {"agent_2": FetchLogsQuorumPayload("agent_2", honest.to_json())}
        data, event = ends_with(test_round, last)
        assert (event, data.agreement) == (Event.DONE, Agreement(100, 110, (make_payment(105),), (make_invoice(),)))
        test_round.context.metrics.consensus.agreement_held.labels.assert_not_called()

    def test_a_range_held_back_is_logged_and_counted(self) -> None:
        """The fourth never reports and the liar omitted the payment: after the late blocks the range
        stops before it (the next period looks again), with one line and one count saying why."""
        self.set_data(checkpoint=99)
        honest = Observation(100, 110, (make_payment(105),), (make_invoice(),))
        payloads = {a: FetchLogsQuorumPayload(a, honest.to_json()) for a in self.agents[:2]}
        payloads["agent_3"] = FetchLogsQuorumPayload("agent_3", replace(honest, payments=()).to_json())
        test_round = round_of(FetchLogsQuorumRound, self.synchronized_data)
        data, event = ends_after_late_blocks(test_round, payloads)
        assert (event, data.agreement) == (Event.DONE, Agreement(100, 104, (), (make_invoice(),)))
        held = test_round.context.metrics.consensus.agreement_held.labels
        held.assert_called_once_with("payment_seen_by_some")
        logged = test_round.context.logger.logger.log.call_args
        assert logged.args[1] == "agreement held back" and logged.kwargs["extra"]["to_block"] == 104


# --------------------------------------------------------------------------- Dedupe


#: Two invoices to RECEIVER, each paid by its own transaction; the agreed scan of 100..110.
INVOICE_A = make_invoice("inv-a", amount=1000)
INVOICE_B = make_invoice("inv-b", amount=2000)
PAID_A = make_payment(105, n=1, value=1000)
PAID_B = make_payment(106, n=2, value=2000)
SCAN = Agreement(100, 110, (PAID_A, PAID_B), (INVOICE_A, INVOICE_B))
EVENTS = derive_events(SCAN, {}, 12).events
EVENT_A = {"id": "inv-a:" + tx_hash(1), "body": EVENTS[0].body}
EVENT_B = {"id": "inv-b:" + tx_hash(2), "body": EVENTS[1].body}
#: The block time the agents agree on in Dedupe: new events are created and due at it.


def queued(event: Dict[str, str]) -> OutboxEntry:
    """The outbox entry of an event enqueued at NOW."""
    return OutboxEntry(event["id"], event["body"], created_at=NOW, next_attempt_at=NOW)


def processed_json(*events: Dict[str, str]) -> str:
    """Processed keys of events (key -> the payment's block), as synchronized state holds them."""
    blocks = {EVENT_A["id"]: 105, EVENT_B["id"]: 106}
    return dumps_processed({e["id"]: blocks[e["id"]] for e in events})


@pytest.fixture
def dedupe_confirmations() -> Iterator[None]:
    """DedupeRound.confirmations is class state set by SharedState.setup: pin it to 12."""
    previous = DedupeRound.confirmations
    DedupeRound.confirmations = 12
    yield
    DedupeRound.confirmations = previous


@pytest.mark.usefixtures("dedupe_confirmations")
class TestDedupeRound(SettlementRoundTestMixin, BaseCollectSameUntilThresholdRoundTest):
    """DedupeRound: agents vote on the digest of the events the round derives from the agreed scan;
    the events enter the outbox and the processed set together."""

    def run_round(  # pylint: disable=too-many-arguments
        self, agreement: Agreement, expected_outbox: List[OutboxEntry], expected_processed: str, event: Event,
        commits: int = 1,
    ) -> None:
        """All four agents vote for the digest of `agreement`'s new events at NOW; new events count as
        a commit (`commits` 1), none do not (0)."""
        self.set_data(agreement=agreement.to_json())
        digest = derive_events(agreement, self.synchronized_data.processed_keys, 12).digest
        payloads = same_payloads(self.participants, lambda p: DedupePayload(p, digest, NOW))
        test_round = round_of(DedupeRound, self.synchronized_data)

        def expected(data: SynchronizedData, round_: DedupeRound) -> SynchronizedData:
            return data.update(
                participant_to_votes=round_.serialized_collection,
                events_digest=digest,
                block_time=NOW,
                outbox=dumps(expected_outbox),
                processed_keys=expected_processed,
                commit_seq=commits,
                delivery_report="[]",
            )

        self._complete_run(
            self._test_round(
                test_round=test_round,
                round_payloads=payloads,
                synchronized_data_update_fn=expected,
                synchronized_data_attr_checks=[
                    lambda d: d.outbox,
                    lambda d: d.processed_keys,
                    lambda d: d.commit_seq,
                    lambda d: d.delivery_report,
                    lambda d: d.db.get("events_digest"),
                    lambda d: d.db.get("block_time"),
                ],
                most_voted_payload=digest,
                exit_event=event,
            )
        )

    def test_new_events_are_enqueued_and_processed(self) -> None:
        """Empty state, two paid invoices: both events wait in the outbox, due at NOW, and are processed
        with their payments' blocks."""
        self.run_round(SCAN, [queued(EVENT_A), queued(EVENT_B)], processed_json(EVENT_A, EVENT_B), Event.DONE)

    def test_already_processed_event_is_not_requeued(self) -> None:
        """EVENT_A is processed and waiting with 3 attempts; a re-scan neither resets nor duplicates it."""
        waiting = OutboxEntry(EVENT_A["id"], EVENT_A["body"], attempts=3, last_status=503)
        self.set_data(outbox=dumps([waiting]), processed_keys=processed_json(EVENT_A))
        self.run_round(SCAN, [waiting, queued(EVENT_B)], processed_json(EVENT_A, EVENT_B), Event.DONE)

    def test_delivered_event_is_not_enqueued_again(self) -> None:
        """EVENT_A was delivered in an earlier period (processed, not in the outbox): nothing to deliver."""
        self.set_data(outbox="[]", processed_keys=processed_json(EVENT_A))
        scan = Agreement(100, 110, (PAID_A,), (INVOICE_A,))
        self.run_round(scan, [], processed_json(EVENT_A), Event.NOTHING_TO_DELIVER, commits=0)

    def test_nothing_new_and_empty_outbox(self) -> None:
        """No payments and an empty outbox: skip delivery."""
        self.run_round(Agreement(100, 110), [], "{}", Event.NOTHING_TO_DELIVER, commits=0)

    def test_nothing_new_but_outbox_waiting(self) -> None:
        """No new events, but an earlier event still waits: deliver it."""
        waiting = OutboxEntry(EVENT_B["id"], EVENT_B["body"], attempts=1, last_status=500)
        self.set_data(outbox=dumps([waiting]), processed_keys=processed_json(EVENT_B))
        self.run_round(Agreement(100, 110), [waiting], processed_json(EVENT_B), Event.DONE, commits=0)

    def test_delivery_report_of_an_earlier_attempt_is_cleared(self) -> None:
        """A stale delivery report (from before a NO_MAJORITY loop) is reset to []."""
        self.set_data(delivery_report=dumps([DeliveryResult(EVENT_A["id"], 200)]))
        scan = Agreement(100, 110, (PAID_A,), (INVOICE_A,))
        self.run_round(scan, [queued(EVENT_A)], processed_json(EVENT_A), Event.DONE)

    def test_waiting_entry_not_yet_due_skips_delivery(self) -> None:
        """Nothing new, and the waiting entry's next attempt is after NOW: go straight to the checkpoint."""
        later = OutboxEntry(EVENT_B["id"], EVENT_B["body"], attempts=1, last_status=503, next_attempt_at=NOW + 1)
        self.set_data(outbox=dumps([later]), processed_keys=processed_json(EVENT_B))
        self.run_round(Agreement(100, 110), [later], processed_json(EVENT_B), Event.NOTHING_TO_DELIVER, commits=0)

    def test_new_event_is_due_even_when_others_wait(self) -> None:
        """A new event is due at once, so the keeper round runs although the older entry is not due."""
        later = OutboxEntry(EVENT_B["id"], EVENT_B["body"], attempts=1, last_status=503, next_attempt_at=NOW + 60)
        self.set_data(outbox=dumps([later]), processed_keys=processed_json(EVENT_B))
        scan = Agreement(100, 110, (PAID_A,), (INVOICE_A,))
        self.run_round(scan, [queued(EVENT_A), later], processed_json(EVENT_A, EVENT_B), Event.DONE)

    def test_digest_the_round_does_not_derive_is_refused(self) -> None:
        """A threshold votes for a digest other than this agent's derivation: NO_MAJORITY, nothing recorded."""
        self.set_data(agreement=SCAN.to_json())
        payloads = same_payloads(self.participants, lambda p: DedupePayload(p, "ab" * 32, NOW))
        result = ends_with(round_of(DedupeRound, self.synchronized_data), payloads)
        assert result is not None
        data, event = result
        assert event == Event.NO_MAJORITY
        assert data.outbox == [] and data.processed_keys == {}

    def test_no_majority(self) -> None:
        """Votes split 2/2 between two digests: no majority, the outbox stays untouched."""
        self.set_data(agreement=SCAN.to_json())
        payloads = {
            agent: DedupePayload(agent, ("ab" if i < 2 else "cd") * 32, NOW)
            for i, agent in enumerate(self.agents)
        }
        result = ends_with(round_of(DedupeRound, self.synchronized_data), payloads)
        assert result is not None
        data, event = result
        assert event == Event.NO_MAJORITY
        assert data.outbox == [] and data.processed_keys == {}


# --------------------------------------------------------------------------- DeliverWebhook


class TestDeliverWebhookRound(SettlementRoundTestMixin, BaseOnlyKeeperSendsRoundTest):
    """DeliverWebhookRound: only the keeper reports, and its report is stored."""

    def due_outbox(self) -> None:
        """agent_1 keeps; events A and B are due at NOW (this round's block time)."""
        self.set_data(most_voted_keeper_address="agent_1", outbox=dumps([queued(EVENT_A), queued(EVENT_B)]))

    def test_done(self) -> None:
        """The keeper (agent_1) reports one delivery and one 503: the report passes the door and is stored."""
        self.due_outbox()
        report = dumps([DeliveryResult(EVENT_A["id"], 200, "", NOW), DeliveryResult(EVENT_B["id"], 503, "", NOW, NOW + 30)])
        test_round = round_of(DeliverWebhookRound, self.synchronized_data)
        test_round.check_payload(DeliverWebhookPayload("agent_1", report))

        def expected(data: SynchronizedData, _round: DeliverWebhookRound) -> SynchronizedData:
            return data.update(delivery_report=report)

        self._complete_run(
            self._test_round(
                test_round=test_round,
                keeper_payloads=DeliverWebhookPayload("agent_1", report),
                synchronized_data_update_fn=expected,
                synchronized_data_attr_checks=[lambda d: d.delivery_report],
                exit_event=Event.DONE,
            )
        )

    def test_non_keeper_payload_is_rejected(self) -> None:
        """agent_2 is not the keeper: its report is not a valid transaction."""
        self.set_data(most_voted_keeper_address="agent_1")
        test_round = round_of(DeliverWebhookRound, self.synchronized_data)
        with pytest.raises(TransactionNotValidError, match="not elected as keeper"):
            test_round.check_payload(DeliverWebhookPayload("agent_2", "[]"))
        assert test_round.end_block() is None

    @pytest.mark.parametrize("report, reason", [
        ("x", "malformed"),  # once raised inside CheckpointRound.end_block on every agent
        ('[{"id": 1}]', "malformed"),
        (dumps([DeliveryResult(EVENT_A["id"], 200, "", NOW + 3600)]), "wrong_time"),
        (dumps([DeliveryResult("other:" + "0x" + "00" * 32, 200, "", NOW)]), "unknown_event"),
        (dumps([DeliveryResult(EVENT_A["id"], 503, "", NOW, NOW + 10**9)]), "out_of_range"),
    ])
    def test_a_lying_report_is_refused_and_counted(self, report: str, reason: str) -> None:
        """The keeper's report is refused at the door, logged and counted: the round waits (then the
        keeper times out and the next keeper delivers from the same outbox)."""
        self.due_outbox()
        test_round = round_of(DeliverWebhookRound, self.synchronized_data)
        with pytest.raises(TransactionNotValidError, match=f"agent_1 refused: {reason}"):
            test_round.check_payload(DeliverWebhookPayload("agent_1", report))
        assert test_round.end_block() is None
        counted = test_round.context.metrics.consensus.byzantine_payloads.labels
        counted.assert_called_once_with("deliver_webhook_round", reason)
        counted.return_value.inc.assert_called_once_with()


# --------------------------------------------------------------------------- KeeperFailover


class TestKeeperFailoverRound(SettlementRoundTestMixin, BaseCollectSameUntilThresholdRoundTest):
    """KeeperFailoverRound: agree on the next keeper, give up after every agent had its turn."""

    def run_round(self, keeper: str, failovers: int, event: Event) -> None:
        """All agents vote (keeper, failovers)."""
        payloads = same_payloads(
            self.participants, lambda p: KeeperFailoverPayload(p, keeper, failovers)
        )
        test_round = round_of(KeeperFailoverRound, self.synchronized_data)

        def expected(data: SynchronizedData, round_: KeeperFailoverRound) -> SynchronizedData:
            return data.update(
                participant_to_votes=round_.serialized_collection,
                most_voted_keeper_address=keeper,
                keeper_failovers=failovers,
            )

        self._complete_run(
            self._test_round(
                test_round=test_round,
                round_payloads=payloads,
                synchronized_data_update_fn=expected,
                synchronized_data_attr_checks=[
                    lambda d: d.most_voted_keeper_address,
                    lambda d: d.keeper_failovers,
                ],
                most_voted_payload=keeper,
                exit_event=event,
            )
        )

    def test_first_failover(self) -> None:
        """agent_0 was silent: agent_1 becomes keeper after failover 1 (DONE: deliver again)."""
        self.set_data(most_voted_keeper_address="agent_0", keeper_failovers=0)
        self.run_round("agent_1", 1, Event.DONE)

    def test_last_agent_gets_its_turn(self) -> None:
        """Failover 3 of 4 participants still gives agent_3 a turn."""
        self.set_data(most_voted_keeper_address="agent_2", keeper_failovers=2)
        self.run_round("agent_3", 3, Event.DONE)

    def test_all_keepers_failed(self) -> None:
        """Failover 4 of 4 participants: every agent was silent once, leave the events for the next period."""
        self.set_data(most_voted_keeper_address="agent_3", keeper_failovers=3)
        self.run_round("agent_0", 4, Event.ALL_KEEPERS_FAILED)

    def test_a_wrong_failover_count_is_refused(self) -> None:
        """Votes split 2/2 on the failover count: the two that skip a keeper are refused, and two valid
        votes are no threshold, so the keeper stays as it was."""
        payloads = {
            agent: KeeperFailoverPayload(agent, "agent_1" if i < 2 else "agent_2", 1 if i < 2 else 2)
            for i, agent in enumerate(self.agents)
        }
        self.set_data(most_voted_keeper_address="agent_0")
        test_round = round_of(KeeperFailoverRound, self.synchronized_data)
        assert ends_with(test_round, payloads) is None
        assert sorted(test_round.collection) == ["agent_0", "agent_1"]
        assert self.synchronized_data.most_voted_keeper_address == "agent_0"


# --------------------------------------------------------------------------- Checkpoint


CREATED = NOW - 100


def entry(name: str, attempts: int = 0, last_status: int = 0, last_error: str = "", **times: Any) -> OutboxEntry:
    """An outbox entry named `name`, created at CREATED unless `times` says otherwise."""
    return OutboxEntry(
        f"{name}:{tx_hash(len(name))}", f'{{"id":"{name}"}}', attempts, last_status, last_error,
        **{"created_at": CREATED, **times},
    )


def digest_of(
    checkpoint: Optional[int],
    outbox: List[OutboxEntry],
    dead: List[OutboxEntry],
    processed: Dict[str, int],
    seq: int = 1,
    checkpoint_hash: str = "",
    parent: str = "",
    dead_summary: str = EMPTY_DEAD_SUMMARY,
) -> str:
    """The digest of a committed state, written out independently of `recovery.CommittedState`."""
    text = json.dumps(
        {
            "seq": seq,
            "checkpoint": checkpoint,
            "checkpoint_hash": checkpoint_hash,
            "parent": parent,
            "outbox": dumps(outbox),
            "dead_letters": dumps(dead),
            "dead_letter_summary": dead_summary,
            "processed_keys": json.dumps(dict(sorted(processed.items())), separators=(",", ":")),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def default_policy() -> Iterator[None]:
    """CheckpointRound.policy is class state set by SharedState.setup: pin it to the defaults (10 attempts)."""
    previous = CheckpointRound.policy
    retention = CheckpointRound.retention_blocks
    CheckpointRound.policy = OutboxPolicy()
    CheckpointRound.retention_blocks = 1000
    yield
    CheckpointRound.policy = previous
    CheckpointRound.retention_blocks = retention


@pytest.mark.usefixtures("default_policy")
class TestCheckpointRound(SettlementRoundTestMixin, BaseCollectSameUntilThresholdRoundTest):
    """CheckpointRound: apply the delivery report and move the checkpoint, only for the digest voted."""

    delivered = entry("delivered")
    retried = entry("retried", attempts=2, last_status=500)
    dying = entry("dying", attempts=9, last_status=503)
    untouched = entry("untouched", next_attempt_at=NOW + 500)
    old_dead = entry("old-dead", attempts=10, last_status=500, dead_reason="max_attempts")
    processed = {e.id: 100 for e in (delivered, retried, dying, untouched, old_dead)}
    #: The hash the agents' providers give the new checkpoint block.
    new_hash = block_hash(110)

    def setup_state(self, checkpoint: Optional[int], agreement: Agreement) -> None:
        """Period state: 4 waiting entries, one earlier dead letter, and the keeper's report made at NOW."""
        report = [
            DeliveryResult(self.delivered.id, 204, "", NOW),
            DeliveryResult(self.retried.id, 0, "timed out", NOW, NOW + 40),
            DeliveryResult(self.dying.id, 502, "", NOW, NOW + 90),
        ]
        self.set_data(
            checkpoint=checkpoint,
            agreement=agreement.to_json(),
            outbox=dumps([self.delivered, self.retried, self.dying, self.untouched]),
            dead_letters=dumps([self.old_dead]),
            processed_keys=dumps_processed(self.processed),
            delivery_report=dumps(report),
        )

    # The state the report leads to: delivered removed, failures counted and rescheduled as the
    # keeper reported, `dying` dead-lettered at its 10th attempt.
    expected_outbox = [
        entry("retried", attempts=3, last_status=0, last_error="timed out", next_attempt_at=NOW + 40,
              last_attempt_at=NOW),
        untouched,
    ]
    # Only what this commit gave up on: earlier dead letters are in the agents' stores, not in the state.
    expected_dead = [
        entry("dying", attempts=10, last_status=502, next_attempt_at=NOW + 90, last_attempt_at=NOW,
              dead_reason="max_attempts"),
    ]

    def commit_digest(
        self, checkpoint: Optional[int], outbox: List[OutboxEntry], dead: List[OutboxEntry], checkpoint_hash: str = ""
    ) -> str:
        """The digest of the state this period commits: one commit after the set-up one (its parent),
        holding only the newly dead, and counting them in the summary that chains their digests."""
        before = self.synchronized_data.db.get("checkpoint", None)
        parent = digest_of(
            before, [self.delivered, self.retried, self.dying, self.untouched], [self.old_dead], self.processed, 0
        )
        summary = json.dumps(
            {"count": len(dead), "digest": hashlib.sha256(dumps(dead).encode()).hexdigest()}, separators=(",", ":")
        ) if dead else EMPTY_DEAD_SUMMARY
        return digest_of(checkpoint, outbox, dead, self.processed, 1, checkpoint_hash, parent, summary)

    def run_round(self, vote: int, digest: str, expected_checkpoint: Optional[int], voted_hash: str = "") -> None:
        """All agents vote (vote, voted_hash, digest); the round must store the expected state."""
        payloads = same_payloads(self.participants, lambda p: CheckpointPayload(p, vote, voted_hash, digest))
        test_round = round_of(CheckpointRound, self.synchronized_data)

        def expected(data: SynchronizedData, round_: CheckpointRound) -> SynchronizedData:
            return data.update(
                participant_to_votes=round_.serialized_collection,
                checkpoint_vote=vote,
                block_hash=voted_hash,
                state_digest=digest,
                checkpoint=expected_checkpoint,
                checkpoint_hash=voted_hash,
                commit_seq=1,
                outbox=dumps(self.expected_outbox),
                dead_letters=dumps(self.expected_dead),
                processed_keys=dumps_processed(self.processed),
            )

        self._complete_run(
            self._test_round(
                test_round=test_round,
                round_payloads=payloads,
                synchronized_data_update_fn=expected,
                synchronized_data_attr_checks=[
                    lambda d: d.checkpoint,
                    lambda d: d.checkpoint_hash,
                    lambda d: d.commit_seq,
                    lambda d: d.outbox,
                    lambda d: d.dead_letters,
                    lambda d: d.processed_keys,
                ],
                most_voted_payload=vote,
                exit_event=Event.DONE,
            )
        )

    def test_done_applies_report_and_moves_checkpoint(self) -> None:
        """Checkpoint 99, agreed scan 100..110: the checkpoint moves to 110 with its hash, the commit
        is counted and the report is applied."""
        self.setup_state(99, Agreement(100, 110))
        digest = self.commit_digest(110, self.expected_outbox, self.expected_dead, self.new_hash)
        state = next_state(110, self.new_hash, self.synchronized_data, OutboxPolicy(), 1000)
        assert state.digest == digest
        self.run_round(110, digest, 110, self.new_hash)
        assert self.synchronized_data.committed_state.digest == digest

    #: A period that did not scan did not read the merchant's list: the acknowledged entry stays.
    acknowledged = entry("delivered", attempts=1, last_status=204, last_attempt_at=NOW,
                         next_attempt_at=NOW + REDELIVERY_AFTER_SECONDS, acknowledgements=1)

    def test_first_start_commits_checkpoint_before_safe_head(self) -> None:
        """No checkpoint, agreed empty range at safe head 497: the checkpoint becomes 496."""
        self.setup_state(None, Agreement(497, 496))
        self.expected_outbox = [self.acknowledged, *self.expected_outbox]
        self.run_round(496, self.commit_digest(496, self.expected_outbox, self.expected_dead), 496)

    def test_nothing_agreed_keeps_no_checkpoint(self) -> None:
        """No checkpoint and nothing agreed (-1..-2): the vote is -1 and the checkpoint stays None."""
        self.setup_state(None, Agreement(-1, -2))
        self.expected_outbox = [self.acknowledged, *self.expected_outbox]
        self.run_round(-1, self.commit_digest(None, self.expected_outbox, self.expected_dead), None)

    def test_an_acknowledged_event_whose_invoice_is_still_listed_stays(self) -> None:
        """The scan still lists the delivered event's invoice: the 2xx is not taken on its word yet."""
        self.setup_state(99, Agreement(100, 110, (), (make_invoice("delivered"),)))
        self.expected_outbox = [self.acknowledged, *self.expected_outbox]
        self.run_round(110, self.commit_digest(110, self.expected_outbox, self.expected_dead, self.new_hash),
                       110, self.new_hash)

    def test_old_processed_keys_leave_unless_their_invoice_is_open(self) -> None:
        """Retention 1000 blocks, checkpoint 5000: keys of blocks <= 4000 go, except an open invoice's."""
        old_open, old_closed = "inv-open:" + tx_hash(7), "inv-closed:" + tx_hash(8)
        kept = {**self.processed, old_open: 3000, "recent:" + tx_hash(9): 4500}
        kept = {key: block + 4000 if block == 100 else block for key, block in kept.items()}
        self.setup_state(4999, Agreement(5000, 5000, (), (make_invoice("inv-open"),)))
        self.set_data(processed_keys=dumps_processed({**kept, old_closed: 4000}))
        state = next_state(5000, "", self.synchronized_data, OutboxPolicy(), 1000)
        assert load_processed(state.values["processed_keys"]) == kept

    def test_digest_differs_from_local_state(self) -> None:
        """A threshold votes for a digest this agent does not compute: NO_MAJORITY, nothing stored."""
        self.setup_state(99, Agreement(100, 110))
        before = self.synchronized_data.committed_state.digest
        payloads = same_payloads(self.participants, lambda p: CheckpointPayload(p, 110, "", "ab" * 32))
        result = ends_with(round_of(CheckpointRound, self.synchronized_data), payloads)
        assert result is not None
        data, event = result
        assert event == Event.NO_MAJORITY
        assert data.checkpoint == 99
        assert [e.id for e in data.outbox] == [
            self.delivered.id, self.dying.id, self.retried.id, self.untouched.id
        ]
        assert data.dead_letters == [self.old_dead]
        assert data.committed_state.digest == before

    def test_checkpoint_vote_differs_from_local_state(self) -> None:
        """The right digest with a wrong checkpoint (105 instead of 110) is refused too."""
        self.setup_state(99, Agreement(100, 110))
        digest = self.commit_digest(110, self.expected_outbox, self.expected_dead)
        payloads = same_payloads(self.participants, lambda p: CheckpointPayload(p, 105, "", digest))
        result = ends_with(round_of(CheckpointRound, self.synchronized_data), payloads)
        assert result is not None
        assert result[1] == Event.NO_MAJORITY
        assert result[0].checkpoint == 99

    def test_hash_must_match_the_digest(self) -> None:
        """A digest made with one block hash and a vote naming another are refused."""
        self.setup_state(99, Agreement(100, 110))
        digest = self.commit_digest(110, self.expected_outbox, self.expected_dead, self.new_hash)
        payloads = same_payloads(self.participants, lambda p: CheckpointPayload(p, 110, block_hash(111), digest))
        result = ends_with(round_of(CheckpointRound, self.synchronized_data), payloads)
        assert result is not None
        assert result[1] == Event.NO_MAJORITY
        assert result[0].checkpoint_hash == ""

    def test_policy_is_honoured(self) -> None:
        """With max_attempts 3, `retried` (2 -> 3 attempts) is dead-lettered as well."""
        CheckpointRound.policy = OutboxPolicy(max_attempts=3)
        self.setup_state(99, Agreement(100, 110))
        outbox = [self.untouched]
        dead = [
            self.expected_dead[0],
            replace(self.expected_outbox[0], dead_reason="max_attempts"),
        ]
        digest = self.commit_digest(110, outbox, dead)
        payloads = same_payloads(self.participants, lambda p: CheckpointPayload(p, 110, "", digest))
        result = ends_with(round_of(CheckpointRound, self.synchronized_data), payloads)
        assert result is not None
        data, event = result
        assert event == Event.DONE
        assert data.outbox == outbox
        assert data.dead_letters == sorted(dead)

    def test_no_majority(self) -> None:
        """Votes split 2/2 between two digests."""
        self.setup_state(99, Agreement(100, 110))
        payloads = {
            agent: CheckpointPayload(agent, 110, "", ("ab" if i < 2 else "cd") * 32)
            for i, agent in enumerate(self.agents)
        }
        result = ends_with(round_of(CheckpointRound, self.synchronized_data), payloads)
        assert result is not None
        assert result[1] == Event.NO_MAJORITY
        assert result[0].checkpoint == 99


# --------------------------------------------------------------------------- RecoverState


def committed(seq: int, checkpoint: Optional[int], outbox: str = "[]") -> CommittedState:
    """A committed state with one processed key per commit."""
    processed = dumps_processed({f"inv-{n}:{tx_hash(n)}": n for n in range(seq)})
    return CommittedState(
        seq, checkpoint, "" if checkpoint is None else block_hash(checkpoint),
        {"outbox": outbox, "dead_letters": "[]", "dead_letter_summary": EMPTY_DEAD_SUMMARY,
         "processed_keys": processed},
    )


#: What every agent of these tests reports as its settings' digests.
SETTINGS = settings_digest.dumps({name: "ab" * 32 for name in settings_digest.CLASSES})


class TestRecoverStateRound(SettlementRoundTestMixin, BaseCollectDifferentUntilThresholdRoundTest):
    """RecoverStateRound: after registration the agents resume from the state `recovery.resume_from` picks."""

    def end_with(self, reports: List[str], settings: Optional[List[str]] = None) -> Any:
        """end_block's result when the agents report these (JSON) states (and settings), once the
        late blocks passed if some agent's report is missing or refused."""
        payloads = {
            agent: RecoverStatePayload(agent, text, setting)
            for agent, text, setting in zip(self.agents, reports, settings or [SETTINGS] * len(reports))
        }
        test_round = round_of(RecoverStateRound, deepcopy(self.synchronized_data))  # rounds update their db
        result = ends_with(test_round, payloads)
        for _ in range(LATE_PAYLOAD_BLOCKS):
            if result is not None:
                break
            result = test_round.end_block()
        self.last_round = test_round
        return result

    def test_done_resumes_from_the_stored_state(self) -> None:
        """All four stores hold commit 7 at block 120: the synchronized state becomes exactly it."""
        state = committed(7, 120, dumps([entry("waiting")]))
        payloads = {agent: RecoverStatePayload(agent, state.to_json(), SETTINGS) for agent in self.agents}

        def expected(data: SynchronizedData, round_: RecoverStateRound) -> SynchronizedData:
            return data.update(
                participant_to_recovery=round_.serialized_collection,
                checkpoint=120, checkpoint_hash=block_hash(120), commit_seq=7, **state.values,
            )

        self._complete_run(
            self._test_round(
                test_round=round_of(RecoverStateRound, self.synchronized_data),
                round_payloads=payloads,
                synchronized_data_update_fn=expected,
                synchronized_data_attr_checks=[lambda d: d.committed_state],
                exit_event=Event.DONE,
            )
        )

    def test_crash_during_checkpoint_rescans_what_only_a_minority_committed(self) -> None:
        """Two agents stored commit 8 (block 130), two commit 7 (block 120): keep commit 8's events,
        but resume at block 120, the highest a threshold holds; the hash of 120 is known."""
        newer, older = committed(8, 130), committed(7, 120)
        data, event = self.end_with([newer.to_json(), newer.to_json(), older.to_json(), older.to_json()])
        assert event == Event.DONE
        assert (data.checkpoint, data.checkpoint_hash, data.commit_seq) == (120, block_hash(120), 8)
        assert data.processed_keys == load_processed(newer.values["processed_keys"])

    def test_damaged_and_lone_reports_count_for_nothing(self) -> None:
        """A damaged report is refused at the door, and a state only one agent claims once everyone
        reported is not vouched for: the vouched state wins either way."""
        vouched, forged = committed(5, 100), committed(9, 900)
        damaged = vouched.to_json().replace('"seq":5', '"seq":6')
        data, event = self.end_with([vouched.to_json(), vouched.to_json(), vouched.to_json(), damaged])
        assert event == Event.DONE and data.committed_state == vouched
        data, event = self.end_with([vouched.to_json(), vouched.to_json(), forged.to_json(), vouched.to_json()])
        assert event == Event.DONE and data.committed_state == vouched

    def test_stores_one_commit_apart_vouch_for_the_older(self) -> None:
        """The issue's case: after a kill -9 one store holds commit 9, one commit 8 (9's parent) and one
        nothing, and the fourth report is late. Commit 8 is vouched for, but 9 may be real too:
        resuming at 8 would forget what 9 recorded, so wait. The fourth decides: 9 if it holds 9, else
        8 (9 is then held by fewer than f + 1 stores, as only a forgery can be)."""
        eight = committed(8, 120)
        nine = eight.successor(130, block_hash(130), committed(9, 130).values)
        three = [nine.to_json(), eight.to_json(), CommittedState().to_json()]
        assert self.end_with(three) is None
        data, event = self.end_with([*three, nine.to_json()])
        assert event == Event.DONE and data.committed_state == replace(nine, checkpoint=120, checkpoint_hash="")
        data, event = self.end_with([*three, eight.to_json()])
        assert event == Event.DONE and data.committed_state == eight

    def test_empty_stores_start_afresh(self) -> None:
        """Nobody holds a state: nothing is set, the first scan starts as on a first start."""
        empty = CommittedState().to_json()
        data, event = self.end_with([empty] * 4)
        assert event == Event.DONE
        assert data.checkpoint is None and data.commit_seq == 0

    def test_newer_synchronized_state_is_kept(self) -> None:
        """Registration after an error: the synchronized state (commit 9) is newer than the reports'."""
        self.set_data(**{"checkpoint": 150, "commit_seq": 9})
        older = committed(7, 120).to_json()
        data, _ = self.end_with([older] * 4)
        assert (data.checkpoint, data.commit_seq) == (150, 9)

    def test_waits_for_threshold(self) -> None:
        """Two reports are not a threshold."""
        test_round = round_of(RecoverStateRound, self.synchronized_data)
        for agent in self.agents[:2]:
            test_round.process_payload(RecoverStatePayload(agent, CommittedState().to_json(), SETTINGS))
        assert test_round.end_block() is None


# --------------------------------------------------------------------------- helpers of rounds.py


@pytest.mark.parametrize(
    "checkpoint, agreement, expected",
    [
        (99, Agreement(100, 110), 110),  # scanned 100..110
        (99, Agreement(100, 99), 99),  # agreed empty range: unchanged
        (None, Agreement(497, 496), 496),  # first start: just before the safe head
        (None, Agreement(-1, -2), None),  # nothing agreed: still no checkpoint
        (42, Agreement(-1, -2), 42),  # never moves back
    ],
)
def test_committed_checkpoint(checkpoint: Optional[int], agreement: Agreement, expected: Optional[int]) -> None:
    """The checkpoint after a period follows the agreed range's end."""
    data = SynchronizedData(AbciAppDB(setup_data={"checkpoint": [checkpoint], "agreement": [agreement.to_json()]}))
    assert committed_checkpoint(data) == expected


def test_checkpoint_vote_and_next_block() -> None:
    """-1 stands for no checkpoint in votes; the next block follows the checkpoint."""
    assert checkpoint_vote(None) == -1
    assert checkpoint_vote(7) == 7
    assert next_block(None) is None
    assert next_block(7) == 8


def test_synchronized_data_defaults() -> None:
    """Before anything is stored, the persisted state reads as empty."""
    data = SynchronizedData(AbciAppDB(setup_data={}))
    assert data.checkpoint is None
    assert data.checkpoint_hash == "" and data.commit_seq == 0 and data.reorg_block is None
    assert data.processed_keys == {}
    assert data.outbox == []
    assert data.dead_letters == []
    assert data.delivery_report == []
    assert data.keeper_failovers == 0


# --------------------------------------------------------------------------- AbciApp


class TestSettlementAbciApp:
    """The transition function, timeouts and persisted keys, as the docstring states them."""

    @pytest.mark.parametrize(
        "round_cls, event, next_round",
        [
            (RecoverStateRound, Event.DONE, SelectKeeperRound),
            (RecoverStateRound, Event.ROUND_TIMEOUT, RecoverStateRound),
            (SelectKeeperRound, Event.DONE, FetchLogsQuorumRound),
            (SelectKeeperRound, Event.NO_MAJORITY, SelectKeeperRound),
            (SelectKeeperRound, Event.ROUND_TIMEOUT, SelectKeeperRound),
            (FetchLogsQuorumRound, Event.DONE, DedupeRound),
            (FetchLogsQuorumRound, Event.REORG_DETECTED, CheckpointRound),
            (FetchLogsQuorumRound, Event.ROUND_TIMEOUT, FetchLogsQuorumRound),
            (DedupeRound, Event.DONE, DeliverWebhookRound),
            (DedupeRound, Event.NOTHING_TO_DELIVER, CheckpointRound),
            (DedupeRound, Event.NO_MAJORITY, FetchLogsQuorumRound),
            (DedupeRound, Event.ROUND_TIMEOUT, FetchLogsQuorumRound),
            (DeliverWebhookRound, Event.DONE, CheckpointRound),
            (DeliverWebhookRound, Event.KEEPER_TIMEOUT, KeeperFailoverRound),
            (KeeperFailoverRound, Event.DONE, DeliverWebhookRound),
            (KeeperFailoverRound, Event.ALL_KEEPERS_FAILED, CheckpointRound),
            (KeeperFailoverRound, Event.NO_MAJORITY, KeeperFailoverRound),
            (KeeperFailoverRound, Event.ROUND_TIMEOUT, KeeperFailoverRound),
            (CheckpointRound, Event.DONE, FinishedSettlementRound),
            (CheckpointRound, Event.NO_MAJORITY, FetchLogsQuorumRound),
            (CheckpointRound, Event.ROUND_TIMEOUT, CheckpointRound),
        ],
    )
    def test_transition(self, round_cls: Any, event: Event, next_round: Any) -> None:
        """Each (round, event) leads where the docstring says."""
        assert SettlementAbciApp.transition_function[round_cls][event] is next_round

    def test_no_other_transitions(self) -> None:
        """Exactly the documented events per round (21 transitions), the final round is a sink."""
        counts = {r.__name__: len(t) for r, t in SettlementAbciApp.transition_function.items()}
        assert counts == {
            "RecoverStateRound": 2,
            "SelectKeeperRound": 3,
            "FetchLogsQuorumRound": 3,
            "DedupeRound": 4,
            "DeliverWebhookRound": 2,
            "KeeperFailoverRound": 4,
            "CheckpointRound": 3,
            "FinishedSettlementRound": 0,
        }

    def test_retry_transitions_are_those_only_failures_lead_to(self) -> None:
        """Entering a round through these pairs means the previous round failed (no majority, timeout)."""
        assert RETRY_TRANSITIONS == {
            (RecoverStateRound, RecoverStateRound),
            (SelectKeeperRound, SelectKeeperRound),
            (FetchLogsQuorumRound, FetchLogsQuorumRound),
            (DedupeRound, FetchLogsQuorumRound),
            (KeeperFailoverRound, KeeperFailoverRound),
            (CheckpointRound, FetchLogsQuorumRound),
            (CheckpointRound, CheckpointRound),
        }

    def test_timeouts_and_states(self) -> None:
        """Both timeout events have a timeout; initial and final states as documented."""
        assert set(SettlementAbciApp.event_to_timeout) == {Event.ROUND_TIMEOUT, Event.KEEPER_TIMEOUT}
        assert SettlementAbciApp.initial_round_cls is RecoverStateRound
        assert SettlementAbciApp.initial_states == {RecoverStateRound, SelectKeeperRound}
        assert SettlementAbciApp.final_states == {FinishedSettlementRound}

    def test_cross_period_state_survives_a_new_period(self) -> None:
        """The committed state carries over; the period's work does not."""
        assert SettlementAbciApp.cross_period_persisted_keys == frozenset(
            {"checkpoint", "checkpoint_hash", "commit_seq", "commit_parent", "processed_keys", "outbox",
             "dead_letters", "dead_letter_summary", "settings_digest"}
        )
        assert SettlementAbciApp.db_post_conditions[FinishedSettlementRound] == set(
            SettlementAbciApp.cross_period_persisted_keys
        )
        db = AbciAppDB(
            setup_data=AbciAppDB.data_to_lists(
                {
                    "participants": ("agent_0", "agent_1"),
                    "all_participants": ("agent_0", "agent_1"),
                    "consensus_threshold": 2,
                    "safe_contract_address": "0x0",
                }
            ),
            cross_period_persisted_keys=SettlementAbciApp.cross_period_persisted_keys,
        )
        db.update(
            checkpoint=110,
            checkpoint_hash=block_hash(110),
            commit_seq=4,
            commit_parent="",
            processed_keys='{"k:0x1":7}',
            outbox="[]",
            dead_letters="[]",
            dead_letter_summary=EMPTY_DEAD_SUMMARY,
            settings_digest="",
            agreement=Agreement(100, 110).to_json(),
            most_voted_keeper_address="agent_0",
        )
        data = SynchronizedData(db).create()
        assert data.checkpoint == 110
        assert data.processed_keys == {"k:0x1": 7}
        assert (data.checkpoint_hash, data.commit_seq) == (block_hash(110), 4)
        assert data.db.get("agreement", None) is None
        assert data.db.get("most_voted_keeper_address", None) is None


# --------------------------------------------------------------------------- the door


class TestPayloadsAreCheckedAtTheDoor(SettlementRoundTestMixin, BaseCollectSameUntilThresholdRoundTest):
    """Every round refuses what no honest agent sends, with TransactionNotValidError (never another
    exception), so a hostile payload counts as its sender's abstention on every agent alike."""

    @pytest.mark.parametrize("round_cls, payload, reason", [
        (DedupeRound, DedupePayload("agent_3", "ab" * 32, NOW + 60), "wrong_time"),
        (DedupeRound, DedupePayload("agent_3", ["ab"], NOW), "malformed"),  # type: ignore[arg-type]
        (SelectKeeperRound, SelectKeeperPayload("agent_3", ["agent_0"]), "unknown_agent"),  # type: ignore[arg-type]
        (KeeperFailoverRound, KeeperFailoverPayload("agent_3", "agent_1", "1"), "out_of_range"),  # type: ignore[arg-type]
        (CheckpointRound, CheckpointPayload("agent_3", 120, "0x12", "ab" * 32), "malformed"),
        (CheckpointRound, CheckpointPayload("agent_3", 2**64, "", "ab" * 32), "out_of_range"),
        (FetchLogsQuorumRound, FetchLogsQuorumPayload("agent_3", '{"payments": "all of them"}'), "malformed"),
        (RecoverStateRound, RecoverStatePayload("agent_3", "[" * 100_000, SETTINGS), "malformed"),
    ])
    def test_refused_with_its_reason(self, round_cls: Any, payload: BaseTxPayload, reason: str) -> None:
        """Malformed or impossible: refused, counted by round and reason, and not collected."""
        test_round = round_of(round_cls, self.synchronized_data)
        with pytest.raises(TransactionNotValidError, match=f"payload from agent_3 refused: {reason}"):
            test_round.check_payload(payload)
        assert "agent_3" not in test_round.collection
        test_round.context.metrics.consensus.byzantine_payloads.labels.assert_called_once_with(
            round_cls.auto_round_id(), reason
        )

    def test_honest_payloads_pass(self) -> None:
        """What the behaviours send passes the door of each round."""
        keeper = sorted(self.participants)[0]
        honest = [
            (DedupeRound, DedupePayload("agent_3", "ab" * 32, NOW)),
            (SelectKeeperRound, SelectKeeperPayload("agent_3", keeper)),
            (KeeperFailoverRound, KeeperFailoverPayload("agent_3", sorted(self.participants)[1], 1)),
            (CheckpointRound, CheckpointPayload("agent_3", -1, "", "ab" * 32)),
            (FetchLogsQuorumRound, FetchLogsQuorumPayload("agent_3", Observation(-1, 120).to_json())),
            (RecoverStateRound, RecoverStatePayload("agent_3", CommittedState().to_json(), SETTINGS)),
        ]
        for round_cls, payload in honest:
            round_of(round_cls, self.synchronized_data).check_payload(payload)
