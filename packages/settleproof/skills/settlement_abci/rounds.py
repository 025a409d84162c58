"""The settlement FSM: which rounds exist, what each decides, and what survives a period."""

import hashlib
import json
from enum import Enum
from typing import Dict, FrozenSet, List, Optional, Set, Tuple, cast

from packages.settleproof.skills.settlement_abci import outbox as outbox_rules
from packages.settleproof.skills.settlement_abci.agreement import (
    Agreement,
    Observation,
    agree,
)
from packages.settleproof.skills.settlement_abci.payloads import (
    CheckpointPayload,
    DedupePayload,
    DeliverWebhookPayload,
    FetchLogsQuorumPayload,
    KeeperFailoverPayload,
    SelectKeeperPayload,
)
from packages.settleproof.skills.settlement_abci.webhook import WebhookEvent
from packages.valory.skills.abstract_round_abci.base import (
    AbciApp,
    AbciAppTransitionFunction,
    AppState,
    BaseSynchronizedData,
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


class SynchronizedData(BaseSynchronizedData):
    """The settlement state every agent agrees on.

    `checkpoint`, `processed_keys`, `outbox` and `dead_letters` persist across
    periods; the rest is the current period's work.
    """

    @property
    def checkpoint(self) -> Optional[int]:
        """The last block whose payments are fully recorded, or None before the first scan."""
        return cast(Optional[int], self.db.get("checkpoint", None))

    @property
    def processed_keys(self) -> List[str]:
        """Idempotency keys (`invoice_uuid:tx_hash`) of every recorded payment."""
        return cast(List[str], json.loads(self.db.get("processed_keys", None) or "[]"))

    @property
    def outbox(self) -> List[outbox_rules.OutboxEntry]:
        """Events awaiting the merchant's acknowledgement."""
        return outbox_rules.load_entries(cast(str, self.db.get("outbox", None) or "[]"))

    @property
    def dead_letters(self) -> List[outbox_rules.OutboxEntry]:
        """Events given up on after the last attempt; kept for the operator."""
        return outbox_rules.load_entries(cast(str, self.db.get("dead_letters", None) or "[]"))

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


def state_digest(
    checkpoint: Optional[int], synchronized_data: SynchronizedData, policy: outbox_rules.OutboxPolicy
) -> Tuple[Optional[int], str, Dict[str, str]]:
    """The state a Checkpoint round commits, and a digest agents vote on.

    Returns (checkpoint, digest, values) where values are the serialized keys to store.
    """
    remaining, dead, _ = outbox_rules.apply_results(
        synchronized_data.outbox, synchronized_data.delivery_report, policy
    )
    values = {
        "outbox": outbox_rules.dumps(remaining),
        "dead_letters": outbox_rules.dumps([*synchronized_data.dead_letters, *dead]),
        "processed_keys": json.dumps(synchronized_data.processed_keys, separators=(",", ":")),
    }
    return checkpoint, _digest(checkpoint, values), values


def stored_state_digest(synchronized_data: SynchronizedData) -> str:
    """The digest of the state `synchronized_data` holds now: equal to a vote's digest once
    a Checkpoint round committed that vote (CheckpointBehaviour stores only then)."""
    values = {
        "outbox": outbox_rules.dumps(synchronized_data.outbox),
        "dead_letters": outbox_rules.dumps(synchronized_data.dead_letters),
        "processed_keys": json.dumps(synchronized_data.processed_keys, separators=(",", ":")),
    }
    return _digest(synchronized_data.checkpoint, values)


def _digest(checkpoint: Optional[int], values: Dict[str, str]) -> str:
    text = json.dumps({"checkpoint": checkpoint, **values}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class SelectKeeperRound(CollectSameUntilThresholdRound):
    """Agree on the period's keeper, `sorted(participants)[period % n]`."""

    payload_class = SelectKeeperPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    no_majority_event = Event.NO_MAJORITY
    none_event = Event.NO_MAJORITY
    collection_key = get_name(SynchronizedData.participant_to_votes)
    selection_key = get_name(SynchronizedData.most_voted_keeper_address)

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Start the period with no failover counted."""
        result = super().end_block()
        if result is not None and result[1] == Event.DONE:
            data = result[0].update(
                synchronized_data_class=SynchronizedData, keeper_failovers=0
            )
            return data, Event.DONE
        return result


class FetchLogsQuorumRound(CollectDifferentUntilThresholdRound):
    """Agree on the range, the open invoices and the payments seen by a quorum of agents."""

    payload_class = FetchLogsQuorumPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    collection_key = get_name(SynchronizedData.participant_to_observation)
    required_block_confirmations = 0

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Once a threshold of observations arrived, derive the agreement from them."""
        result = super().end_block()
        if result is None:
            return None
        data = cast(SynchronizedData, result[0])
        observations = [
            Observation.from_json(cast(FetchLogsQuorumPayload, p).observation)
            for p in self.collection.values()
        ]
        agreement = self.agreement(data, observations)
        data = cast(
            SynchronizedData,
            data.update(synchronized_data_class=SynchronizedData, agreement=agreement.to_json()),
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
            return agree(observations, from_block, threshold, data.nb_participants)
        heads = sorted((o.to_block for o in observations if o.from_block < 0), reverse=True)
        if len(heads) < threshold or heads[threshold - 1] < 0:
            return Agreement(-1, -2)
        start = heads[threshold - 1]
        return Agreement(start, start - 1)


def next_block(checkpoint: Optional[int]) -> Optional[int]:
    """The first block not yet scanned, or None before the first scan."""
    return None if checkpoint is None else checkpoint + 1


class DedupeRound(CollectSameUntilThresholdRound):
    """Agree on the new events and record them in the outbox and the processed set at once."""

    payload_class = DedupePayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    no_majority_event = Event.NO_MAJORITY
    none_event = Event.NO_MAJORITY
    collection_key = get_name(SynchronizedData.participant_to_votes)
    selection_key = ("new_events", "block_time")

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Enqueue the agreed events at the agreed block time; skip delivery when nothing is due."""
        result = super().end_block()
        if result is None or result[1] != Event.DONE:
            return result
        data = cast(SynchronizedData, result[0])
        new_events, now = self.most_voted_payload_values
        events = [WebhookEvent(**e) for e in json.loads(new_events)]
        entries, processed = outbox_rules.enqueue(data.outbox, data.processed_keys, events, now)
        data = cast(
            SynchronizedData,
            data.update(
                synchronized_data_class=SynchronizedData,
                outbox=outbox_rules.dumps(entries),
                processed_keys=json.dumps(processed, separators=(",", ":")),
                delivery_report="[]",
            ),
        )
        return data, (Event.DONE if outbox_rules.due(entries, now) else Event.NOTHING_TO_DELIVER)


class DeliverWebhookRound(OnlyKeeperSendsRound):
    """The keeper POSTs the due events and reports what the merchant answered."""

    payload_class = DeliverWebhookPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    fail_event = Event.DONE
    payload_key = "delivery_report"


class KeeperFailoverRound(CollectSameUntilThresholdRound):
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

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """After every participant had its turn, leave the events for the next period."""
        result = super().end_block()
        if result is None or result[1] != Event.DONE:
            return result
        data = cast(SynchronizedData, result[0])
        if data.keeper_failovers >= data.nb_participants:
            return data, Event.ALL_KEEPERS_FAILED
        return data, Event.DONE


class CheckpointRound(CollectSameUntilThresholdRound):
    """Commit the period: apply the delivery report, then move the checkpoint."""

    payload_class = CheckpointPayload
    synchronized_data_class = SynchronizedData
    done_event = Event.DONE
    no_majority_event = Event.NO_MAJORITY
    none_event = Event.NO_MAJORITY
    collection_key = get_name(SynchronizedData.participant_to_votes)
    selection_key = ("checkpoint_vote", "state_digest")
    #: When to give up on an event; SharedState.setup sets it from the params.
    policy: outbox_rules.OutboxPolicy = outbox_rules.OutboxPolicy()

    def end_block(self) -> Optional[Tuple[BaseSynchronizedData, Enum]]:
        """Store the state whose digest a threshold of agents voted for."""
        result = super().end_block()
        if result is None or result[1] != Event.DONE:
            return result
        data = cast(SynchronizedData, result[0])
        checkpoint, digest, values = state_digest(committed_checkpoint(data), data, self.policy)
        voted = self.most_voted_payload_values
        if (checkpoint_vote(checkpoint), digest) != (voted[0], voted[1]):
            # This agent's view differs from the majority's: never store a state nobody voted for.
            return data, Event.NO_MAJORITY
        data = cast(
            SynchronizedData,
            data.update(synchronized_data_class=SynchronizedData, checkpoint=checkpoint, **values),
        )
        return data, Event.DONE


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

    Initial round: SelectKeeperRound

    Initial states: {SelectKeeperRound}

    Transition states:
        0. SelectKeeperRound
            - done: 1.
            - no majority: 0.
            - round timeout: 0.
        1. FetchLogsQuorumRound
            - done: 2.
            - round timeout: 1.
        2. DedupeRound
            - done: 3.
            - nothing to deliver: 5.
            - no majority: 1.
            - round timeout: 1.
        3. DeliverWebhookRound
            - done: 5.
            - keeper timeout: 4.
        4. KeeperFailoverRound
            - done: 3.
            - all keepers failed: 5.
            - no majority: 4.
            - round timeout: 4.
        5. CheckpointRound
            - done: 6.
            - no majority: 1.
            - round timeout: 5.
        6. FinishedSettlementRound

    Final states: {FinishedSettlementRound}

    Timeouts:
        round timeout: 30.0
        keeper timeout: 30.0
    """

    initial_round_cls: AppState = SelectKeeperRound
    initial_states: Set[AppState] = {SelectKeeperRound}
    transition_function: AbciAppTransitionFunction = {
        SelectKeeperRound: {
            Event.DONE: FetchLogsQuorumRound,
            Event.NO_MAJORITY: SelectKeeperRound,
            Event.ROUND_TIMEOUT: SelectKeeperRound,
        },
        FetchLogsQuorumRound: {
            Event.DONE: DedupeRound,
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
            get_name(SynchronizedData.processed_keys),
            get_name(SynchronizedData.outbox),
            get_name(SynchronizedData.dead_letters),
        }
    )
    db_pre_conditions: Dict[AppState, Set[str]] = {SelectKeeperRound: set()}
    db_post_conditions: Dict[AppState, Set[str]] = {
        FinishedSettlementRound: {
            get_name(SynchronizedData.checkpoint),
            get_name(SynchronizedData.processed_keys),
            get_name(SynchronizedData.outbox),
            get_name(SynchronizedData.dead_letters),
        },
    }
