"""Behaviours of the settlement rounds: gather inputs, call the pure cores, send the payload."""

import json
import sqlite3
import time
from abc import ABC
from dataclasses import dataclass
from typing import Any, Generator, List, Optional, Sequence, Set, Tuple, Type

from packages.settleproof.skills.settlement_abci.behaviour_base import (
    HttpRequest,
    SettlementBaseBehaviour,
)
from packages.settleproof.skills.settlement_abci.delivery import (
    WebhookSenderMixin,
    block_time,
    delivery_budget,
)
from packages.settleproof.skills.settlement_abci.dedupe import MAX_OUTBOX_ENTRIES
from packages.settleproof.skills.settlement_abci.keeper import keeper_for
from packages.settleproof.skills.settlement_abci.metrics import (
    ConsensusMetrics,
    DurabilityMetrics,
    WebhookMetrics,
)
from packages.settleproof.skills.settlement_abci import settings_digest
from packages.settleproof.skills.settlement_abci.models import InvalidSettings
from packages.settleproof.skills.settlement_abci.observer import ObserverMixin
from packages.settleproof.skills.settlement_abci.outbox import (
    DeliveryResult,
    OutboxEntry,
    apply_results,
    load_dead_summary,
    load_entries,
    attempt_result,
    dumps,
    event_fields,
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
from packages.settleproof.skills.settlement_abci.recovery import RECOVERY_LIMIT_BYTES, CommittedState
from packages.settleproof.skills.settlement_abci.webhook_retry import (
    header,
    outcome_of,
    retry_after_seconds,
)
from packages.settleproof.skills.settlement_abci.rounds import (
    CheckpointRound,
    DedupeRound,
    DeliverWebhookRound,
    FetchLogsQuorumRound,
    KeeperFailoverRound,
    RETRY_TRANSITIONS,
    RecoverStateRound,
    SelectKeeperRound,
    SettlementAbciApp,
    SynchronizedData,
    checkpoint_vote,
    committed_checkpoint,
    enqueued_state,
    next_block,
    due_now,
    next_state,
    scan_within_capacity,
)
from packages.settleproof.skills.settlement_abci.store import StoreError
from packages.settleproof.skills.settlement_abci.webhook import (
    WebhookEvent,
    signed_headers,
)
from packages.valory.skills.abstract_round_abci.base import BaseTxPayload
from packages.valory.skills.abstract_round_abci.behaviours import (
    AbstractRoundBehaviour,
    BaseBehaviour,
)


class SettlementBehaviour(SettlementBaseBehaviour, ABC):
    """Sends one payload per round and waits for the round to end."""

    def __init__(self, **kwargs: Any) -> None:
        """The framework makes one behaviour per round entered: count the entry."""
        super().__init__(**kwargs)
        self.count_round_entry()

    def count_round_entry(self) -> None:
        """Keeper selections, failovers, and retries (entered through a no-majority or timeout transition)."""
        metrics: ConsensusMetrics = self.context.metrics.consensus
        if self.matching_round is SelectKeeperRound:
            metrics.keeper_selections.inc()
        if self.matching_round is KeeperFailoverRound:
            metrics.keeper_failovers.inc()
        try:  # pylint: disable=protected-access  # the framework keeps the rounds run so far here
            previous = self.context.state.round_sequence._abci_app._previous_rounds or [None]
        except (ValueError, AttributeError):  # before the FSM is set up (loading the skill)
            previous = [None]
        if (type(previous[-1]), self.matching_round) in RETRY_TRANSITIONS:
            metrics.retries.labels(type(previous[-1]).auto_round_id()).inc()

    def finish(self, payload: BaseTxPayload) -> Generator:
        """Send the payload through consensus, wait for the round to end, then hand over."""
        with self.context.benchmark_tool.measure(self.behaviour_id).consensus():
            yield from self.send_a2a_transaction(payload)
            yield from self.wait_until_round_end()
        self.set_done()

    def store_if_committed(self, state: CommittedState, period: int, silent_keepers: Sequence[str] = ()) -> bool:
        """Write `state` to the durable store if the round that just ended committed it.

        Called from `clean_up` (the framework replaces the behaviour when its round ends, so code
        after `wait_until_round_end` may never run). By then the next round runs, whose
        synchronized data class may be another skill's: read the db through ours.
        """
        if SynchronizedData(self.synchronized_data.db).committed_state.digest != state.digest:
            self.log("warning", "state not stored: the round did not commit this agent's view", period=period)
            return False
        try:
            self.context.durable_store.store.commit(state, period, silent_keepers)
        except (StoreError, sqlite3.Error) as error:
            self.log("error", "durable store not written", period=period, error=str(error)[:300])
        return True


class RecoverStateBehaviour(SettlementBehaviour):
    """After registration, report the committed state this agent holds: its store's, or the
    synchronized one when that is newer (registration after an error keeps it)."""

    matching_round = RecoverStateRound

    def async_act(self) -> Generator:
        """Read the store; a store that cannot be read reports nothing rather than stop the agent."""
        report = self.synchronized_data.committed_state
        try:
            stored = self.context.durable_store.store.committed_state()
        except (StoreError, sqlite3.Error) as error:
            self.log("error", "durable store unreadable", error=str(error)[:300])
            stored = None
        if stored is not None and stored.seq > report.seq:
            report = stored
        self.log("info", "reporting committed state", seq=report.seq, checkpoint=report.checkpoint)
        settings = settings_digest.dumps(self.params.settings_digests)
        yield from self.finish(RecoverStatePayload(self.context.agent_address, report.to_json(), settings))


class SelectKeeperBehaviour(SettlementBehaviour):
    """Propose `sorted(participants)[period % n]` as the keeper."""

    matching_round = SelectKeeperRound

    def async_act(self) -> Generator:
        """Compute the keeper; every honest agent computes the same one."""
        data = self.synchronized_data
        self.stop_if_settings_differ(data.settings_digest)
        keeper = keeper_for(data.participants, data.period_count)
        self.log(
            "info", "keeper selected", keeper=keeper,
            checkpoint=data.checkpoint, commit_seq=data.commit_seq,
        )
        yield from self.finish(SelectKeeperPayload(self.context.agent_address, keeper))


    def stop_if_settings_differ(self, agreed: str) -> None:
        """An agent whose vote-shaping settings differ from what a threshold agreed would split off
        or block a majority in every round: stop it, naming the settings to fix."""
        if not agreed:
            return
        differing = settings_digest.differing_classes(self.params.settings_digests, json.loads(agreed))
        if differing:
            names = "; ".join(f"{name} ({settings_digest.CLASS_SETTINGS[name]})" for name in differing)
            line = f"stopping: this agent's settings differ from the other agents' in {names}"
            self.log("critical", line)
            raise InvalidSettings(line)


class FetchLogsQuorumBehaviour(ObserverMixin, SettlementBehaviour):
    """Report this agent's observation of the next range."""

    matching_round = FetchLogsQuorumRound

    def async_act(self) -> Generator:
        """Read invoices and logs from the merchant and the providers."""
        data = self.synchronized_data
        from_block = next_block(data.checkpoint)
        if from_block is None:
            from_block = self.params.settings.start_block
        anchor = data.checkpoint if data.checkpoint_hash else None
        with self.context.benchmark_tool.measure(self.behaviour_id).local():
            observation = yield from self.observe(from_block, anchor)
        if anchor is not None and observation.anchor_hash not in ("", data.checkpoint_hash):
            self.log(
                "error", "chain no longer holds the checkpoint block", block=anchor,
                stored_hash=data.checkpoint_hash, chain_hash=observation.anchor_hash,
            )
        self.log(
            "info",
            "observed",
            from_block=observation.from_block,
            to_block=observation.to_block,
            payments=len(observation.payments),
            invoices=None if observation.invoices is None else len(observation.invoices),  # null: unavailable
        )
        for payment in observation.payments:
            transfer = payment.transfer
            self.log(
                "info", "payment observed", tx_hash=transfer.tx_hash, block=transfer.block_number,
                log_index=transfer.log_index, token=transfer.token, to=transfer.receiver, amount=str(transfer.value),
            )
        payload = FetchLogsQuorumPayload(self.context.agent_address, observation.to_json())
        yield from self.finish(payload)


class DedupeBehaviour(SettlementBehaviour):
    """Match the agreed payments to the agreed invoices and drop what was already processed; once the
    round recorded new events, store them before any keeper can POST them."""

    matching_round = DedupeRound

    def __init__(self, **kwargs: Any) -> None:
        """Nothing to store yet."""
        super().__init__(**kwargs)
        self.pending: Optional[Tuple[CommittedState, int]] = None

    def async_act(self) -> Generator:
        """Derive the new events from agreed data only, so every agent votes for the same digest."""
        data = self.synchronized_data
        confirmations = self.params.settings.confirmations
        scan, derived = scan_within_capacity(data, confirmations)
        now = block_time(self.round_sequence)
        if scan != data.agreement:
            self.log(
                "warning", "outbox full: this period's scan stops early", to_block=scan.to_block,
                agreed_to_block=data.agreement.to_block, waiting=len(data.outbox), limit=MAX_OUTBOX_ENTRIES,
            )
        if derived.events:
            self.pending = (enqueued_state(data, derived.events, now), data.period_count)
        for settlement in derived.settlements:
            self.log(
                "info",
                "invoice settled",
                invoice_uuid=settlement.invoice.uuid,
                tx_hash=settlement.transfer.tx_hash,
                block=settlement.transfer.block_number,
            )
        self.log("info", "deduplicated", new_events=len(derived.events), duplicates_dropped=derived.duplicates)
        if derived.duplicates:
            durability: DurabilityMetrics = self.context.metrics.durability
            durability.duplicates_dropped.inc(derived.duplicates)
        payload = DedupePayload(self.context.agent_address, derived.digest, now)
        yield from self.finish(payload)

    def clean_up(self) -> None:
        """Store the recorded events if the round committed them."""
        pending, self.pending = self.pending, None
        super().clean_up()
        if pending is not None:
            self.store_if_committed(*pending)


class DeliverWebhookBehaviour(WebhookSenderMixin, SettlementBehaviour):
    """The keeper POSTs the due events to the merchant and reports what happened; the others wait."""

    matching_round = DeliverWebhookRound

    def async_act(self) -> Generator:
        """Only the agreed keeper ever sends a webhook; its report goes through consensus."""
        data = self.synchronized_data
        if self.context.agent_address != data.most_voted_keeper_address:
            self.log("info", "waiting for the keeper", keeper=data.most_voted_keeper_address)
            yield from self.wait_until_round_end()
            self.set_done()
            return
        now = block_time(self.round_sequence)
        entries = due_now(data, now, self.params.webhook_max_per_period)
        self.log("info", "delivering", due=len(entries), waiting=len(data.outbox))
        with self.context.benchmark_tool.measure(self.behaviour_id).local():
            results = yield from self.deliver(entries, now)
        if len(results) < len(entries):
            self.log("warning", "delivery budget spent", sent=len(results), left_due=len(entries) - len(results))
        yield from self.finish(DeliverWebhookPayload(self.context.agent_address, dumps(results)))

    def deliver(
        self, entries: Sequence[OutboxEntry], now: int
    ) -> Generator[None, None, List[DeliveryResult]]:
        """POST the entries within this round's budget; each reply becomes a result with its next
        attempt scheduled at block time `now` + backoff (or `Retry-After`)."""
        params, settings = self.params, self.params.settings
        signed_at = int(time.time())  # receivers check webhook-timestamp against their own clock
        requests = [
            HttpRequest(
                "POST",
                settings.webhook_url,
                entry.body.encode(),
                signed_headers(WebhookEvent(entry.id, entry.body), settings.webhook_secrets, signed_at),
            )
            for entry in entries
        ]
        budget = delivery_budget(params.round_timeout_seconds)
        sent = yield from self.post_within(
            requests, params.webhook_concurrency, params.webhook_timeout_seconds, budget
        )
        metrics: WebhookMetrics = self.context.metrics.webhooks
        results: List[DeliveryResult] = []
        for entry, attempt in zip(entries, sent):
            if attempt is None:  # never sent: still due next period
                continue
            reply = attempt.reply
            retry_after = retry_after_seconds(header(reply.headers, "Retry-After"), time.time())
            result = attempt_result(entry, reply.status, reply.error, retry_after, now, params.backoff)
            outcome = outcome_of(reply.status)
            metrics.deliveries.labels(outcome.value).inc()
            metrics.latency.observe(attempt.seconds * 1000)
            if result.delivered and not entry.acknowledged:
                metrics.verification_latency.observe(max(0.0, time.time() - entry.created_at))
            if entry.acknowledged:
                metrics.redeliveries.inc()
                self.log(
                    "warning", "webhook sent again: the merchant still lists its invoice after a 2xx",
                    **event_fields(entry.id), acknowledgements=entry.acknowledgements,
                )
            self.log(
                "info" if result.delivered else "warning",
                "webhook attempt",
                **event_fields(entry.id),
                attempt=entry.attempts + 1,
                status=reply.status,
                outcome=outcome.value,
                error=reply.error[:100],
                retry_in=max(0, result.retry_at - now) if result.retry_at else None,
            )
            results.append(result)
        return results


class KeeperFailoverBehaviour(SettlementBehaviour):
    """The keeper stayed silent: propose the next agent in the order."""

    matching_round = KeeperFailoverRound

    def async_act(self) -> Generator:
        """Move one step along `sorted(participants)`."""
        data = self.synchronized_data
        failovers = data.keeper_failovers + 1
        keeper = keeper_for(data.participants, data.period_count, failovers)
        self.log(
            "warning",
            "keeper failover",
            silent_keeper=data.most_voted_keeper_address,
            next_keeper=keeper,
            failovers=failovers,
        )
        payload = KeeperFailoverPayload(self.context.agent_address, keeper, failovers)
        yield from self.finish(payload)


@dataclass(frozen=True)
class CheckpointVote:
    """What a Checkpoint vote stands for: the state it commits and the transition behind it."""

    state: CommittedState
    period: int
    before: Tuple[OutboxEntry, ...]
    newly_dead: Tuple[OutboxEntry, ...]
    delivered: Tuple[str, ...]
    reorg_block: Optional[int]
    silent_keepers: Tuple[str, ...]


class CheckpointBehaviour(ObserverMixin, SettlementBehaviour):
    """Vote for the state the period commits; once the round committed it, write it to the durable store."""

    matching_round = CheckpointRound

    def __init__(self, **kwargs: Any) -> None:
        """No vote yet."""
        super().__init__(**kwargs)
        self.vote: Optional[CheckpointVote] = None

    def async_act(self) -> Generator:
        """Every agent derives the same checkpoint and state from agreed data; the new checkpoint's
        block hash comes from a quorum of providers, so the next periods can tell a deep reorg."""
        data, params = self.synchronized_data, self.params
        checkpoint = committed_checkpoint(data)
        block_hash = data.checkpoint_hash
        if checkpoint is not None and checkpoint != data.checkpoint:
            block_hash = yield from self.block_hash(checkpoint)
            if not block_hash:
                self.log("warning", "checkpoint block hash unknown: no provider quorum", block=checkpoint)
        state = next_state(checkpoint, block_hash, data, params.outbox_policy, params.processed_retention_blocks)
        _, dead, delivered = apply_results(data.outbox, data.delivery_report, params.outbox_policy)
        silent = tuple(
            keeper_for(data.participants, data.period_count, k) for k in range(data.keeper_failovers)
        )
        self.vote = CheckpointVote(
            state, data.period_count, tuple(data.outbox), tuple(dead), tuple(delivered), data.reorg_block, silent
        )
        size = len(state.to_json())
        if size > RECOVERY_LIMIT_BYTES:
            self.log(
                "warning", "committed state too large to share at a recovery; lower processed_retention_blocks",
                bytes=size, limit=RECOVERY_LIMIT_BYTES,
            )
        if data.reorg_block is not None:
            self.log(
                "error", "halted: the chain no longer holds the checkpoint block; not advancing",
                block=data.reorg_block, checkpoint_hash=data.checkpoint_hash,
            )
        self.log("info", "checkpoint", block=checkpoint, commit_seq=state.seq)
        payload = CheckpointPayload(
            self.context.agent_address, checkpoint_vote(checkpoint), block_hash, state.digest
        )
        yield from self.finish(payload)

    def clean_up(self) -> None:
        """Store the state and count the transition if the round committed this vote."""
        vote, self.vote = self.vote, None
        super().clean_up()
        if vote is not None and self.store_if_committed(vote.state, vote.period, vote.silent_keepers):
            self.count(vote)

    def count(self, vote: CheckpointVote) -> None:
        """Metrics of the committed transition, the same on every agent."""
        metrics: WebhookMetrics = self.context.metrics.webhooks
        attempts = {entry.id: entry.attempts for entry in vote.before}
        for event_id in vote.delivered:
            metrics.attempts.observe(attempts[event_id] + 1)
            self.log("info", "webhook delivered", **event_fields(event_id), attempts=attempts[event_id] + 1)
        for entry in vote.newly_dead:
            metrics.attempts.observe(entry.attempts)
            metrics.dead_letters.labels(entry.dead_reason).inc()
            self.log(
                "error", "webhook dead-lettered", **event_fields(entry.id), reason=entry.dead_reason,
                attempts=entry.attempts, last_status=entry.last_status,
            )
        metrics.outbox_depth.set(len(load_entries(vote.state.values["outbox"])))
        metrics.dlq_depth.set(load_dead_summary(vote.state.values["dead_letter_summary"])[0])
        durability: DurabilityMetrics = self.context.metrics.durability
        durability.record_commit(vote.state.checkpoint, vote.state.seq, vote.reorg_block)


class SettlementRoundBehaviour(AbstractRoundBehaviour):
    """The settlement FSM's behaviours."""

    initial_behaviour_cls = RecoverStateBehaviour
    abci_app_cls = SettlementAbciApp
    behaviours: Set[Type[BaseBehaviour]] = {  # type: ignore
        RecoverStateBehaviour,
        SelectKeeperBehaviour,
        FetchLogsQuorumBehaviour,
        DedupeBehaviour,
        DeliverWebhookBehaviour,
        KeeperFailoverBehaviour,
        CheckpointBehaviour,
    }
