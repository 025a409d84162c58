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
from packages.settleproof.skills.settlement_abci.keeper import keeper_for
from packages.settleproof.skills.settlement_abci.matching import match
from packages.settleproof.skills.settlement_abci.metrics import WebhookMetrics
from packages.settleproof.skills.settlement_abci.observer import ObserverMixin
from packages.settleproof.skills.settlement_abci.outbox import (
    DeliveryResult,
    OutboxEntry,
    apply_results,
    attempt_result,
    due,
    dumps,
    used_transactions,
)
from packages.settleproof.skills.settlement_abci.payloads import (
    CheckpointPayload,
    DedupePayload,
    DeliverWebhookPayload,
    FetchLogsQuorumPayload,
    KeeperFailoverPayload,
    SelectKeeperPayload,
)
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
    SelectKeeperRound,
    SettlementAbciApp,
    SynchronizedData,
    checkpoint_vote,
    committed_checkpoint,
    next_block,
    state_digest,
    stored_state_digest,
)
from packages.settleproof.skills.settlement_abci.store import StoreError
from packages.settleproof.skills.settlement_abci.webhook import (
    WebhookEvent,
    build_event,
    signed_headers,
)
from packages.valory.skills.abstract_round_abci.base import BaseTxPayload
from packages.valory.skills.abstract_round_abci.behaviours import (
    AbstractRoundBehaviour,
    BaseBehaviour,
)


class SettlementBehaviour(SettlementBaseBehaviour, ABC):
    """Sends one payload per round and waits for the round to end."""

    def finish(self, payload: BaseTxPayload) -> Generator:
        """Send the payload through consensus, wait for the round to end, then hand over."""
        with self.context.benchmark_tool.measure(self.behaviour_id).consensus():
            yield from self.send_a2a_transaction(payload)
            yield from self.wait_until_round_end()
        self.set_done()


class SelectKeeperBehaviour(SettlementBehaviour):
    """Propose `sorted(participants)[period % n]` as the keeper."""

    matching_round = SelectKeeperRound

    def async_act(self) -> Generator:
        """Compute the keeper; every honest agent computes the same one."""
        data = self.synchronized_data
        keeper = keeper_for(data.participants, data.period_count)
        self.log("info", "keeper selected", period=data.period_count, keeper=keeper)
        yield from self.finish(SelectKeeperPayload(self.context.agent_address, keeper))


class FetchLogsQuorumBehaviour(ObserverMixin, SettlementBehaviour):
    """Report this agent's observation of the next range."""

    matching_round = FetchLogsQuorumRound

    def async_act(self) -> Generator:
        """Read invoices and logs from the merchant and the providers."""
        data = self.synchronized_data
        from_block = next_block(data.checkpoint)
        if from_block is None:
            from_block = self.params.settings.start_block
        with self.context.benchmark_tool.measure(self.behaviour_id).local():
            observation = yield from self.observe(from_block)
        self.log(
            "info",
            "observed",
            period=data.period_count,
            from_block=observation.from_block,
            to_block=observation.to_block,
            payments=len(observation.payments),
            invoices="unavailable" if observation.invoices is None else len(observation.invoices),
        )
        payload = FetchLogsQuorumPayload(self.context.agent_address, observation.to_json())
        yield from self.finish(payload)


class DedupeBehaviour(SettlementBehaviour):
    """Match the agreed payments to the agreed invoices and drop what was already processed."""

    matching_round = DedupeRound

    def async_act(self) -> Generator:
        """Derive the new events from agreed data only, so every agent builds the same bytes."""
        data = self.synchronized_data
        agreement = data.agreement
        processed = data.processed_keys
        used = used_transactions(processed)
        fresh = [p for p in agreement.payments if p.transfer.tx_hash not in used]
        duplicates = len(agreement.payments) - len(fresh)
        settled = {key.rsplit(":", 1)[0] for key in processed}
        timestamps = {p.transfer: p.block_timestamp for p in fresh}
        settlements = match(agreement.invoices, list(timestamps), settled)
        confirmations = self.params.settings.confirmations
        events = [
            build_event(s, timestamps[s.transfer], confirmations) for s in settlements
        ]
        for settlement in settlements:
            self.log(
                "info",
                "invoice settled",
                invoice_uuid=settlement.invoice.uuid,
                tx_hash=settlement.transfer.tx_hash,
                block=settlement.transfer.block_number,
            )
        if duplicates:
            self.log("info", "duplicate payments dropped", count=duplicates)
        new_events = json.dumps(
            [{"id": e.id, "body": e.body} for e in sorted(events, key=lambda e: e.id)],
            separators=(",", ":"),
        )
        payload = DedupePayload(self.context.agent_address, new_events, block_time(self.round_sequence))
        yield from self.finish(payload)


class DeliverWebhookBehaviour(WebhookSenderMixin, SettlementBehaviour):
    """The keeper POSTs the due events to the merchant and reports what happened; the others wait."""

    matching_round = DeliverWebhookRound

    def async_act(self) -> Generator:
        """Only the agreed keeper ever sends a webhook; its report goes through consensus."""
        data = self.synchronized_data
        if self.context.agent_address != data.most_voted_keeper_address:
            yield from self.wait_until_round_end()
            self.set_done()
            return
        now = block_time(self.round_sequence)
        entries = due(data.outbox, now, self.params.webhook_max_per_period)
        self.log("info", "delivering", period=data.period_count, due=len(entries), waiting=len(data.outbox))
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
            self.log(
                "info" if result.delivered else "warning",
                "webhook attempt",
                event_id=entry.id,
                attempt=entry.attempts + 1,
                status=reply.status,
                outcome=outcome.value,
                error=reply.error[:100],
                retry_in=max(0, result.retry_at - now) if result.retry_at else "-",
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
    """What a Checkpoint vote stands for: the digest, and the state and transition behind it."""

    digest: str
    checkpoint: Optional[int]
    period: int
    before: Tuple[OutboxEntry, ...]
    outbox: Tuple[OutboxEntry, ...]
    dead_letters: Tuple[OutboxEntry, ...]
    newly_dead: Tuple[OutboxEntry, ...]
    delivered: Tuple[str, ...]


class CheckpointBehaviour(SettlementBehaviour):
    """Vote for the state the period commits; once the round committed it, write it to the durable store."""

    matching_round = CheckpointRound

    def __init__(self, **kwargs: Any) -> None:
        """No vote yet."""
        super().__init__(**kwargs)
        self.vote: Optional[CheckpointVote] = None

    def async_act(self) -> Generator:
        """Every agent derives the same checkpoint and state from agreed data."""
        data = self.synchronized_data
        policy = self.params.outbox_policy
        checkpoint, digest, _ = state_digest(committed_checkpoint(data), data, policy)
        remaining, dead, delivered = apply_results(data.outbox, data.delivery_report, policy)
        self.vote = CheckpointVote(
            digest, checkpoint, data.period_count, tuple(data.outbox), tuple(remaining),
            tuple(sorted([*data.dead_letters, *dead])), tuple(dead), tuple(delivered),
        )
        self.log("info", "checkpoint", period=data.period_count, block=checkpoint)
        payload = CheckpointPayload(self.context.agent_address, checkpoint_vote(checkpoint), digest)
        yield from self.finish(payload)

    def clean_up(self) -> None:
        """Called when the round has ended (the framework then replaces this behaviour, so code after
        `wait_until_round_end` may never run): store the state if the round committed this vote."""
        vote, self.vote = self.vote, None
        super().clean_up()
        if vote is None:
            return
        # By now the next round runs, whose synchronized data class may be another skill's.
        if stored_state_digest(SynchronizedData(self.synchronized_data.db)) != vote.digest:
            self.log("warning", "checkpoint not stored: the round did not commit this vote", period=vote.period)
            return
        try:
            self.context.durable_store.store.commit_checkpoint(
                vote.checkpoint, vote.period, vote.outbox, vote.dead_letters
            )
        except (StoreError, sqlite3.Error) as error:
            self.log("error", "durable store not written", period=vote.period, error=str(error)[:300])
        self.count(vote)

    def count(self, vote: CheckpointVote) -> None:
        """Metrics of the committed transition, the same on every agent."""
        metrics: WebhookMetrics = self.context.metrics.webhooks
        attempts = {entry.id: entry.attempts for entry in vote.before}
        for event_id in vote.delivered:
            metrics.attempts.observe(attempts[event_id] + 1)
        for entry in vote.newly_dead:
            metrics.attempts.observe(entry.attempts)
            metrics.dead_letters.labels(entry.dead_reason).inc()
            self.log(
                "error", "webhook dead-lettered", event_id=entry.id, reason=entry.dead_reason,
                attempts=entry.attempts, last_status=entry.last_status,
            )
        metrics.outbox_depth.set(len(vote.outbox))


class SettlementRoundBehaviour(AbstractRoundBehaviour):
    """The settlement FSM's behaviours."""

    initial_behaviour_cls = SelectKeeperBehaviour
    abci_app_cls = SettlementAbciApp
    behaviours: Set[Type[BaseBehaviour]] = {  # type: ignore
        SelectKeeperBehaviour,
        FetchLogsQuorumBehaviour,
        DedupeBehaviour,
        DeliverWebhookBehaviour,
        KeeperFailoverBehaviour,
        CheckpointBehaviour,
    }
