"""The settlement FSM: which rounds exist, what each decides, and what survives a period."""

import logging
from abc import ABC
from enum import Enum
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple, cast

from packages.settleproof.skills.settlement_abci import outbox as outbox_rules
from packages.settleproof.skills.settlement_abci.agreement import (
    Agreement,
    Observation,
    agree_explained,
    anchor_verdict,
)
from packages.settleproof.skills.settlement_abci.dedupe import NewEvents, within_capacity
from packages.settleproof.skills.settlement_abci.keeper import keeper_for
from packages.settleproof.skills.settlement_abci import payload_checks as checks
from packages.settleproof.skills.settlement_abci.payloads import (
    CheckpointPayload,
    DedupePayload,
    DeliverWebhookPayload,
    FetchLogsQuorumPayload,
    KeeperFailoverPayload,
    RecoverStatePayload,
    SelectKeeperPayload,
)
from packages.settleproof.skills.settlement_abci.recovery import CommittedState, decide
from packages.settleproof.skills.settlement_abci.round_checks import CheckedPayloadRound
from packages.settleproof.skills.settlement_abci.webhook import WebhookEvent
from packages.valory.skills.abstract_round_abci.base import (
    AbciApp,
    AbciAppTransitionFunction,
    AppState,
    BaseSynchronizedData,
    BaseTxPayload,
    CollectDifferentUntilThresholdRound,
    CollectSameUntilThresholdRound,
    DegenerateRound,
    OnlyKeeperSendsRound,
    get_name,
)


class Event(Enum):
    """Outcomes of the settlement rounds."""

    DONE = "done"
    NOTHING_TO_DELIVER = "nothing_to_deliver"
    NO_MAJORITY = "no_majority"
    ROUND_TIMEOUT = "round_timeout"
    KEEPER_TIMEOUT = "keeper_timeout"
    ALL_KEEPERS_FAILED = "all_keepers_failed"
    REORG_DETECTED = "reorg_detected"


class SynchronizedData(BaseSynchronizedData):
    """The settlement state every agent agrees on.

    `checkpoint`, `checkpoint_hash`, `commit_seq`, `commit_parent`, `processed_keys`, `outbox`,
    `dead_letters` and `dead_letter_summary` persist across periods (the committed state), and so
    does `settings_digest` (agreed once after registration); the rest is the current period's work.
    """

    @property
    def checkpoint(self) -> Optional[int]:
        """The last block whose payments are fully recorded, or None before the first scan."""
        return cast(Optional[int], self.db.get("checkpoint", None))

    @property
    def checkpoint_hash(self) -> str:
        """The checkpoint block's hash as a quorum of providers named it ("" if unknown)."""
        return cast(str, self.db.get("checkpoint_hash", None) or "")

    @property
    def commit_seq(self) -> int:
        """How many Checkpoint rounds have committed since the service first started."""
        return cast(int, self.db.get("commit_seq", None) or 0)

    @property
    def processed_keys(self) -> Dict[str, int]:
        """Idempotency keys (`invoice_uuid:tx_hash`) of recorded payments -> the payment's block;
        only those `outbox.retain` keeps (the durable store keeps all)."""
        return outbox_rules.load_processed(cast(Optional[str], self.db.get("processed_keys", None)))

    @property
    def outbox(self) -> List[outbox_rules.OutboxEntry]:
        """Events awaiting the merchant's acknowledgement."""
        return outbox_rules.load_entries(cast(str, self.db.get("outbox", None) or "[]"))

    @property
    def dead_letters(self) -> List[outbox_rules.OutboxEntry]:
        """Events the last commit gave up on, for each agent's durable store to keep for the operator:
        synchronized state holds no dead letter beyond the commit that made it one."""
        return outbox_rules.load_entries(cast(str, self.db.get("dead_letters", None) or "[]"))

    @property
    def dead_letter_summary(self) -> str:
        """How many events were ever given up on and the digest chaining them (`outbox.summarize_dead`)."""
        return cast(str, self.db.get("dead_letter_summary", None) or outbox_rules.EMPTY_DEAD_SUMMARY)

    @property
    def committed_state(self) -> CommittedState:
        """The cross-period state as it stands, in the form Checkpoint rounds commit."""
        return CommittedState(
            self.commit_seq,
            self.checkpoint,
            self.checkpoint_hash,
            {
                "outbox": cast(str, self.db.get("outbox", None) or "[]"),
                "dead_letters": cast(str, self.db.get("dead_letters", None) or "[]"),
                "dead_letter_summary": self.dead_letter_summary,
                "processed_keys": cast(str, self.db.get("processed_keys", None) or "{}"),
            },
            self.commit_parent,
        )

    @property
    def commit_parent(self) -> str:
        """The digest of the commit before the current one ("" if not known)."""
        return cast(str, self.db.get("commit_parent", None) or "")

    @property
    def settings_digest(self) -> str:
        """The vote-shaping settings' digests (JSON) a threshold of agents reported after registration."""
        return cast(str, self.db.get("settings_digest", None) or "")

    @property
    def reorg_block(self) -> Optional[int]:
        """This period's checkpoint block that the chain no longer holds, if any."""
        return cast(Optional[int], self.db.get("reorg_block", None))

    @property
    def agreement(self) -> Agreement:
        """This period's agreed scan."""
        return Agreement.from_json(cast(str, self.db.get_strict("agreement")))

    @property
    def delivery_report(self) -> List[outbox_rules.DeliveryResult]:
        """The keeper's agreed delivery results for this period (empty if none)."""
        return outbox_rules.load_results(cast(str, self.db.get("delivery_report", None) or "[]"))

    @property
    def keeper_failovers(self) -> int:
        """How many times this period's keeper was replaced."""
        return cast(int, self.db.get("keeper_failovers", 0))

    @property
    def participant_to_votes(self) -> Dict:
        """The payloads collected by the last voting round."""
        return cast(Dict, self.db.get_strict("participant_to_votes"))

    @property
    def participant_to_observation(self) -> Dict:
        """The collected observations of the FetchLogsQuorum round."""
        return cast(Dict, self.db.get_strict("participant_to_observation"))

    @property
    def participant_to_recovery(self) -> Dict:
        """The committed states the agents reported after registration."""
        return cast(Dict, self.db.get_strict("participant_to_recovery"))


def next_state(
    checkpoint: Optional[int],
    checkpoint_hash: str,
    synchronized_data: SynchronizedData,
    policy: outbox_rules.OutboxPolicy,
    retention_blocks: int,
) -> CommittedState:
    """The state a Checkpoint round commits: the delivery report applied, old processed keys let go,
    the checkpoint moved, and the commit counted. Agents vote on its digest."""
    remaining, dead, _ = outbox_rules.apply_results(
        synchronized_data.outbox, synchronized_data.delivery_report, policy
    )
    agreement, processed = synchronized_data.agreement, synchronized_data.processed_keys
    open_invoices = open_invoice_ids(agreement)
    remaining, _ = outbox_rules.close_acknowledged(remaining, open_invoices)
    if open_invoices is not None:
        processed = outbox_rules.retain(processed, checkpoint, retention_blocks, open_invoices)
    values = {
        "outbox": outbox_rules.dumps(remaining),
        "dead_letters": outbox_rules.dumps(dead),
        "dead_letter_summary": outbox_rules.summarize_dead(synchronized_data.dead_letter_summary, dead),
        "processed_keys": outbox_rules.dumps_processed(processed),
    }
    return synchronized_data.committed_state.successor(checkpoint, checkpoint_hash, values)


def open_invoice_ids(agreement: Agreement) -> Optional[Set[str]]:
    """The invoices the merchant lists as open, as a threshold of agents read them this period, or
    None: only a period that scanned knows (an empty one may not have reached the merchant at all)."""
    if 0 <= agreement.from_block <= agreement.to_block:
        return {invoice.uuid for invoice in agreement.invoices}
    return None


def due_now(data: SynchronizedData, now: int, limit: Optional[int] = None) -> List[outbox_rules.OutboxEntry]:
    """The outbox entries this period's keeper sends at block time `now` (`outbox.due`)."""
    agreed = cast(Optional[str], data.db.get("agreement", None))
    open_invoices = None if agreed is None else open_invoice_ids(Agreement.from_json(agreed))
    return outbox_rules.due(data.outbox, now, limit, open_invoices)


def with_state(data: BaseSynchronizedData, state: CommittedState) -> "SynchronizedData":
    """`data` holding `state` as its committed state."""
    return cast(
        SynchronizedData,
        data.update(
            synchronized_data_class=SynchronizedData,
            checkpoint=state.checkpoint,
            checkpoint_hash=state.checkpoint_hash,
            commit_seq=state.seq,
            commit_parent=state.parent,
            **state.values,
        ),
    )


#: Blocks a collect-different round waits past its threshold for the other agents' payloads. The
#: first threshold of payloads may hold a liar's; with every honest agent's in, what a threshold
#: reports decides whatever the liar says. A constant, so every agent waits alike.
LATE_PAYLOAD_BLOCKS = 4


class CollectAllOrLateRound(CollectDifferentUntilThresholdRound, ABC):
    """Ends as soon as every participant has sent, else `required_block_confirmations` blocks after
    the threshold: one silent agent costs a few blocks, never the round."""

    required_block_confirmations = LATE_PAYLOAD_BLOCKS

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """With every participant's payload in, there is nothing left to wait for."""
        if len(self.collection) >= self.synchronized_data.nb_participants:
            self.block_confirmations = max(self.block_confirmations, self.required_block_confirmations)
        return super().end_block()


class RecoverStateRound(CheckedPayloadRound, CollectAllOrLateRound):
    """After registration: agree on the vote-shaping settings and on the committed state to resume
    from (see `recovery`); wait for more reports while neither can be decided."""

    payload_class = RecoverStatePayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    collection_key = get_name(SynchronizedData.participant_to_recovery)
    #: How far back a resume may re-scan: the processed keys' retention window, set from the params.
    retention_blocks: int = 2000

    def parse_payload(self, payload: BaseTxPayload) -> None:
        """A committed state that matches its digest, and one digest per settings class."""
        report = cast(RecoverStatePayload, payload)
        checks.parse_recovery(report.state)
        checks.parse_settings(report.settings)

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Once the reports decide, resume from the state `recovery.decide` picks."""
        result = super().end_block()
        if result is None:
            return None
        data = cast(SynchronizedData, result[0])
        reports = cast(List[RecoverStatePayload], list(self.collection.values()))
        settings = [report.settings for report in reports]
        agreed = [text for text in set(settings) if settings.count(text) >= data.consensus_threshold]
        if not agreed:
            return self.wait(f"no {data.consensus_threshold} agents report the same settings yet")
        # Every collected report passed `parse_recovery` at the door.
        decision = decide(
            [CommittedState.from_json(report.state) for report in reports],
            data.consensus_threshold, data.nb_participants, self.retention_blocks,
        )
        if decision.wait:
            return self.wait(decision.reason)
        if decision.state is None and decision.reason:
            self.log_line(logging.WARNING, "recovery starts afresh", reason=decision.reason, reports=len(reports))
        if decision.state is not None and decision.state.seq >= data.commit_seq:
            data = with_state(data, decision.state)
        data = data.update(synchronized_data_class=SynchronizedData, settings_digest=agreed[0])
        return data, Event.DONE

    def wait(self, reason: str) -> None:
        """Keep collecting (the round timeout starts it over); say why once per round and reason."""
        said = self.__dict__.setdefault("_said", set())
        if reason not in said:
            said.add(reason)
            self.log_line(logging.WARNING, "recovery waiting for more reports", reason=reason,
                          reports=len(self.collection))
        return None


class SelectKeeperRound(CheckedPayloadRound, CollectSameUntilThresholdRound):
    """Agree on the period's keeper, `sorted(participants)[period % n]`."""

    payload_class = SelectKeeperPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    no_majority_event = Event.NO_MAJORITY
    none_event = Event.NO_MAJORITY
    collection_key = get_name(SynchronizedData.participant_to_votes)
    selection_key = get_name(SynchronizedData.most_voted_keeper_address)

    def parse_payload(self, payload: BaseTxPayload) -> None:
        """The keeper every honest agent computes for this period."""
        data = self.synchronized_data
        keeper = checks.parse_keeper(cast(SelectKeeperPayload, payload).keeper, data.participants)
        if keeper != keeper_for(data.participants, data.period_count):
            raise checks.InvalidPayload("wrong_keeper", f"{keeper} is not the keeper of period {data.period_count}")

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Start the period with no failover counted."""
        result = super().end_block()
        if result is not None and result[1] == Event.DONE:
            data = result[0].update(
                synchronized_data_class=SynchronizedData, keeper_failovers=0
            )
            return data, Event.DONE
        return result


class FetchLogsQuorumRound(CheckedPayloadRound, CollectAllOrLateRound):
    """Agree on the range, the open invoices and the payments seen by a quorum of agents."""

    payload_class = FetchLogsQuorumPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    collection_key = get_name(SynchronizedData.participant_to_observation)

    def parse_payload(self, payload: BaseTxPayload) -> None:
        """An observation with every field in shape and bound."""
        checks.parse_observation(cast(FetchLogsQuorumPayload, payload).observation)

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Once a threshold of observations arrived, derive the agreement from them."""
        result = super().end_block()
        if result is None:
            return None
        data = cast(SynchronizedData, result[0])
        # Every collected observation passed `parse_observation` at the door.
        observations = [
            Observation.from_json(cast(FetchLogsQuorumPayload, p).observation) for p in self.collection.values()
        ]
        verdict = anchor_verdict(
            data.checkpoint_hash, [o.anchor_hash for o in observations], data.consensus_threshold
        )
        if verdict is not True:
            # The chain no longer confirms the checkpoint block (False: a reorg deeper than the
            # confirmation depth; None: not enough agents could tell): scan nothing.
            start = next_block(data.checkpoint)
            nothing = Agreement(-1 if start is None else start, -2 if start is None else start - 1)
            data = cast(
                SynchronizedData,
                data.update(
                    synchronized_data_class=SynchronizedData,
                    agreement=nothing.to_json(),
                    reorg_block=None if verdict is None else data.checkpoint,
                ),
            )
            return data, (Event.DONE if verdict is None else Event.REORG_DETECTED)
        agreement = self.agreement(data, observations)
        data = cast(
            SynchronizedData,
            data.update(
                synchronized_data_class=SynchronizedData,
                agreement=agreement.to_json(),
                reorg_block=None,
            ),
        )
        return data, Event.DONE

    def agreement(self, data: SynchronizedData, observations: List[Observation]) -> Agreement:
        """The period's scan; on the very first one, only the starting point is agreed."""
        threshold = data.consensus_threshold
        from_block = next_block(data.checkpoint)
        if from_block is None:
            # SETTLEPROOF_START_BLOCK: the agents scanned from it (from_block >= 0) instead of
            # reporting only their safe head; agree on the start a threshold of them used.
            starts = [o.from_block for o in observations if o.from_block >= 0]
            agreed_starts = [s for s in set(starts) if starts.count(s) >= threshold]
            from_block = min(agreed_starts) if agreed_starts else None
        if from_block is not None:
            agreement, held_by = agree_explained(observations, from_block, threshold, data.nb_participants)
            if held_by:
                self.report_held_range(held_by, agreement, len(observations))
            return agreement
        heads = sorted((o.to_block for o in observations if o.from_block < 0), reverse=True)
        if len(heads) < threshold or heads[threshold - 1] < 0:
            return Agreement(-1, -2)
        start = heads[threshold - 1]
        return Agreement(start, start - 1)

    def report_held_range(self, reason: str, agreement: Agreement, observations: int) -> None:
        """One line and one count per period whose range stopped short of what a threshold scanned."""
        self.context.metrics.consensus.agreement_held.labels(reason).inc()
        self.log_line(
            logging.WARNING, "agreement held back", reason=reason, from_block=agreement.from_block,
            to_block=agreement.to_block, observations=observations,
        )


def next_block(checkpoint: Optional[int]) -> Optional[int]:
    """The first block not yet scanned, or None before the first scan."""
    return None if checkpoint is None else checkpoint + 1


class DedupeRound(CheckedPayloadRound, CollectSameUntilThresholdRound):
    """Agree on the new events and record them in the outbox and the processed set at once.

    Agents vote on a digest of the events (see `dedupe`); the round derives the
    events from the agreed data itself and commits them only if they match it.
    """

    payload_class = DedupePayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    no_majority_event = Event.NO_MAJORITY
    none_event = Event.NO_MAJORITY
    collection_key = get_name(SynchronizedData.participant_to_votes)
    selection_key = ("events_digest", "block_time")
    #: The depth stamped on each event; SharedState.setup sets it from the params.
    confirmations: int = 12

    def parse_payload(self, payload: BaseTxPayload) -> None:
        """A digest, stamped with the block time that started this round."""
        vote = cast(DedupePayload, payload)
        checks.parse_dedupe(vote.events_digest, vote.block_time)
        if vote.block_time != self.round_block_time():
            raise checks.InvalidPayload("wrong_time", f"block_time {vote.block_time}, not {self.round_block_time()}")

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Enqueue the agreed events at the agreed block time; skip delivery when nothing is due."""
        result = super().end_block()
        if result is None or result[1] != Event.DONE:
            return result
        data = cast(SynchronizedData, result[0])
        voted_digest, now = self.most_voted_payload_values
        scan, derived = scan_within_capacity(data, self.confirmations)
        if derived.digest != voted_digest:
            # This agent derives other events than the majority: never record what nobody voted for.
            return data, Event.NO_MAJORITY
        if derived.events:
            data = with_state(data, enqueued_state(data, derived.events, now))
        if scan != data.agreement:
            self.context.metrics.consensus.agreement_held.labels("outbox_full").inc()
        data = cast(
            SynchronizedData,
            data.update(synchronized_data_class=SynchronizedData, delivery_report="[]", agreement=scan.to_json()),
        )
        # The cut scan is the period's agreement from here on: the keeper sends what is due by it.
        return data, (Event.DONE if due_now(data, now) else Event.NOTHING_TO_DELIVER)


def scan_within_capacity(data: SynchronizedData, confirmations: int) -> Tuple[Agreement, NewEvents]:
    """The period's agreed scan, cut where the outbox would be full, and its new events
    (`dedupe.within_capacity`)."""
    return within_capacity(data.agreement, data.processed_keys, confirmations, len(data.outbox))


def enqueued_state(data: SynchronizedData, events: Sequence[WebhookEvent], now: int) -> CommittedState:
    """The committed state once the Dedupe round recorded new events (outbox and processed keys at
    once), counted as a commit of its own: agents store it before the keeper POSTs anything, so a
    crash of every agent after a delivery can never re-match that payment to another invoice.
    The checkpoint does not move: the Checkpoint round moves it."""
    entries, processed = outbox_rules.enqueue(data.outbox, data.processed_keys, events, now)
    values = {
        **data.committed_state.values,
        "outbox": outbox_rules.dumps(entries),
        "dead_letters": "[]",
        "processed_keys": outbox_rules.dumps_processed(processed),
    }
    return data.committed_state.successor(data.checkpoint, data.checkpoint_hash, values)


class DeliverWebhookRound(CheckedPayloadRound, OnlyKeeperSendsRound):
    """The keeper POSTs the due events and reports what the merchant answered.

    The report is refused unless every result names an event due at this round's
    block time, was made at that time, and has a status and a retry time in range:
    a refused report is the keeper's silence, and the next keeper delivers again.
    """

    payload_class = DeliverWebhookPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    fail_event = Event.DONE
    payload_key = "delivery_report"

    def parse_payload(self, payload: BaseTxPayload) -> None:
        """Results only for this round's due events, made at its block time."""
        now = self.round_block_time()
        due_ids = [entry.id for entry in due_now(self.synchronized_data, now)]
        checks.parse_delivery_report(cast(DeliverWebhookPayload, payload).delivery_report, due_ids, now)


class KeeperFailoverRound(CheckedPayloadRound, CollectSameUntilThresholdRound):
    """The keeper stayed silent: agree on the next one, or give up for this period."""

    payload_class = KeeperFailoverPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    no_majority_event = Event.NO_MAJORITY
    none_event = Event.NO_MAJORITY
    collection_key = get_name(SynchronizedData.participant_to_votes)
    selection_key = (
        get_name(SynchronizedData.most_voted_keeper_address),
        get_name(SynchronizedData.keeper_failovers),
    )

    def parse_payload(self, payload: BaseTxPayload) -> None:
        """One more failover than agreed, naming the agent after the silent one."""
        data, vote = self.synchronized_data, cast(KeeperFailoverPayload, payload)
        failovers = checks.parse_failover(vote.keeper, vote.failovers, data.participants)
        expected = data.keeper_failovers + 1
        if failovers != expected or vote.keeper != keeper_for(data.participants, data.period_count, expected):
            raise checks.InvalidPayload("wrong_keeper", f"failover {failovers} to {vote.keeper}, not failover {expected}")

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """After every participant had its turn, leave the events for the next period."""
        result = super().end_block()
        if result is None or result[1] != Event.DONE:
            return result
        data = cast(SynchronizedData, result[0])
        if data.keeper_failovers >= data.nb_participants:
            return data, Event.ALL_KEEPERS_FAILED
        return data, Event.DONE


class CheckpointRound(CheckedPayloadRound, CollectSameUntilThresholdRound):
    """Commit the period: apply the delivery report, then move the checkpoint (with its block hash)."""

    payload_class = CheckpointPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    no_majority_event = Event.NO_MAJORITY
    none_event = Event.NO_MAJORITY
    collection_key = get_name(SynchronizedData.participant_to_votes)
    selection_key = ("checkpoint_vote", "block_hash", "state_digest")
    #: When to give up on an event; SharedState.setup sets it from the params.
    policy: outbox_rules.OutboxPolicy = outbox_rules.OutboxPolicy()
    #: How many blocks of processed keys synchronized state keeps; set from the params.
    retention_blocks: int = 2000

    def parse_payload(self, payload: BaseTxPayload) -> None:
        """A checkpoint block, its hash and a state digest, each in shape."""
        vote = cast(CheckpointPayload, payload)
        checks.parse_checkpoint(vote.checkpoint, vote.block_hash, vote.state_digest)

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Store the state whose digest a threshold of agents voted for."""
        result = super().end_block()
        if result is None or result[1] != Event.DONE:
            return result
        data = cast(SynchronizedData, result[0])
        voted_checkpoint, voted_hash, voted_digest = self.most_voted_payload_values
        state = next_state(
            committed_checkpoint(data), voted_hash, data, self.policy, self.retention_blocks
        )
        if (checkpoint_vote(state.checkpoint), state.digest) != (voted_checkpoint, voted_digest):
            # This agent's view differs from the majority's: never store a state nobody voted for.
            return data, Event.NO_MAJORITY
        return with_state(data, state), Event.DONE


def checkpoint_vote(checkpoint: Optional[int]) -> int:
    """A checkpoint as an int payload field: -1 stands for "no checkpoint yet"."""
    return -1 if checkpoint is None else checkpoint


def committed_checkpoint(data: SynchronizedData) -> Optional[int]:
    """The checkpoint after this period: the agreed range's end, or unchanged if nothing was scanned."""
    agreement = data.agreement
    if agreement.to_block >= agreement.from_block - 1 and agreement.from_block >= 0:
        return agreement.to_block
    return data.checkpoint


class FinishedSettlementRound(DegenerateRound):
    """The period's work is committed."""


class SettlementAbciApp(AbciApp[Event]):
    """SettlementAbciApp

    Initial round: RecoverStateRound

    Initial states: {RecoverStateRound, SelectKeeperRound}

    Transition states:
        0. RecoverStateRound
            - done: 1.
            - round timeout: 0.
        1. SelectKeeperRound
            - done: 2.
            - no majority: 1.
            - round timeout: 1.
        2. FetchLogsQuorumRound
            - done: 3.
            - reorg detected: 6.
            - round timeout: 2.
        3. DedupeRound
            - done: 4.
            - nothing to deliver: 6.
            - no majority: 2.
            - round timeout: 2.
        4. DeliverWebhookRound
            - done: 6.
            - keeper timeout: 5.
        5. KeeperFailoverRound
            - done: 4.
            - all keepers failed: 6.
            - no majority: 5.
            - round timeout: 5.
        6. CheckpointRound
            - done: 7.
            - no majority: 2.
            - round timeout: 6.
        7. FinishedSettlementRound

    Final states: {FinishedSettlementRound}

    Timeouts:
        round timeout: 30.0
        keeper timeout: 30.0
    """

    initial_round_cls: AppState = RecoverStateRound
    initial_states: Set[AppState] = {RecoverStateRound, SelectKeeperRound}
    transition_function: AbciAppTransitionFunction = {
        RecoverStateRound: {
            Event.DONE: SelectKeeperRound,
            Event.ROUND_TIMEOUT: RecoverStateRound,
        },
        SelectKeeperRound: {
            Event.DONE: FetchLogsQuorumRound,
            Event.NO_MAJORITY: SelectKeeperRound,
            Event.ROUND_TIMEOUT: SelectKeeperRound,
        },
        FetchLogsQuorumRound: {
            Event.DONE: DedupeRound,
            Event.REORG_DETECTED: CheckpointRound,
            Event.ROUND_TIMEOUT: FetchLogsQuorumRound,
        },
        DedupeRound: {
            Event.DONE: DeliverWebhookRound,
            Event.NOTHING_TO_DELIVER: CheckpointRound,
            Event.NO_MAJORITY: FetchLogsQuorumRound,
            Event.ROUND_TIMEOUT: FetchLogsQuorumRound,
        },
        DeliverWebhookRound: {
            Event.DONE: CheckpointRound,
            Event.KEEPER_TIMEOUT: KeeperFailoverRound,
        },
        KeeperFailoverRound: {
            Event.DONE: DeliverWebhookRound,
            Event.ALL_KEEPERS_FAILED: CheckpointRound,
            Event.NO_MAJORITY: KeeperFailoverRound,
            Event.ROUND_TIMEOUT: KeeperFailoverRound,
        },
        CheckpointRound: {
            Event.DONE: FinishedSettlementRound,
            Event.NO_MAJORITY: FetchLogsQuorumRound,
            Event.ROUND_TIMEOUT: CheckpointRound,
        },
        FinishedSettlementRound: {},
    }
    final_states: Set[AppState] = {FinishedSettlementRound}
    event_to_timeout: Dict[Event, float] = {
        Event.ROUND_TIMEOUT: 30.0,
        Event.KEEPER_TIMEOUT: 30.0,
    }
    cross_period_persisted_keys: FrozenSet[str] = frozenset(
        {
            get_name(SynchronizedData.checkpoint),
            get_name(SynchronizedData.checkpoint_hash),
            get_name(SynchronizedData.commit_seq),
            get_name(SynchronizedData.commit_parent),
            get_name(SynchronizedData.processed_keys),
            get_name(SynchronizedData.outbox),
            get_name(SynchronizedData.dead_letters),
            get_name(SynchronizedData.dead_letter_summary),
            get_name(SynchronizedData.settings_digest),
        }
    )
    db_pre_conditions: Dict[AppState, Set[str]] = {
        RecoverStateRound: set(),
        SelectKeeperRound: set(),
    }
    db_post_conditions: Dict[AppState, Set[str]] = {
        FinishedSettlementRound: {
            get_name(SynchronizedData.checkpoint),
            get_name(SynchronizedData.checkpoint_hash),
            get_name(SynchronizedData.commit_seq),
            get_name(SynchronizedData.commit_parent),
            get_name(SynchronizedData.processed_keys),
            get_name(SynchronizedData.outbox),
            get_name(SynchronizedData.dead_letters),
            get_name(SynchronizedData.dead_letter_summary),
            get_name(SynchronizedData.settings_digest),
        },
    }


#: (round, next round) pairs that only a failed round leads to (no majority, round timeout):
#: entering the next round through one of them is a retry.
RETRY_TRANSITIONS: FrozenSet[Tuple[AppState, AppState]] = frozenset(
    (source, target)
    for source, moves in SettlementAbciApp.transition_function.items()
    for event, target in moves.items()
    if event in (Event.NO_MAJORITY, Event.ROUND_TIMEOUT)
) - frozenset(
    (source, target)
    for source, moves in SettlementAbciApp.transition_function.items()
    for event, target in moves.items()
    if event not in (Event.NO_MAJORITY, Event.ROUND_TIMEOUT)
)
