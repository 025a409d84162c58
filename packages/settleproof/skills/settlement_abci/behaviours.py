"""Behaviours of the settlement rounds: gather inputs, call the pure cores, send the payload."""

import json
from abc import ABC
import time
from typing import Generator, List, Set, Type

from packages.settleproof.skills.settlement_abci.behaviour_base import (
    HttpRequest,
    SettlementBaseBehaviour,
)
from packages.settleproof.skills.settlement_abci.keeper import keeper_for
from packages.settleproof.skills.settlement_abci.matching import match
from packages.settleproof.skills.settlement_abci.observer import ObserverMixin
from packages.settleproof.skills.settlement_abci.outbox import (
    DeliveryResult,
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
from packages.settleproof.skills.settlement_abci.rounds import (
    CheckpointRound,
    DedupeRound,
    DeliverWebhookRound,
    FetchLogsQuorumRound,
    KeeperFailoverRound,
    SelectKeeperRound,
    SettlementAbciApp,
    checkpoint_vote,
    committed_checkpoint,
    next_block,
    state_digest,
)
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
        yield from self.finish(DedupePayload(self.context.agent_address, new_events))


class DeliverWebhookBehaviour(SettlementBehaviour):
    """The keeper POSTs the outbox to the merchant; the others wait."""

    matching_round = DeliverWebhookRound

    def async_act(self) -> Generator:
        """Only the agreed keeper ever sends a webhook."""
        data = self.synchronized_data
        if self.context.agent_address != data.most_voted_keeper_address:
            yield from self.wait_until_round_end()
            self.set_done()
            return
        with self.context.benchmark_tool.measure(self.behaviour_id).local():
            results = yield from self.deliver([WebhookEvent(e.id, e.body) for e in data.outbox])
        yield from self.finish(DeliverWebhookPayload(self.context.agent_address, dumps(results)))

    def deliver(self, events: List[WebhookEvent]) -> Generator[None, None, List[DeliveryResult]]:
        """POST each event, `webhook_concurrency` at a time, and record what the merchant said."""
        settings = self.params.settings
        results: List[DeliveryResult] = []
        batch_size = self.params.webhook_concurrency
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            now = int(time.time())
            requests = [
                HttpRequest(
                    "POST",
                    settings.webhook_url,
                    event.body.encode(),
                    signed_headers(event, settings.webhook_secrets, now),
                )
                for event in batch
            ]
            replies = yield from self.http_parallel(requests, self.params.webhook_timeout_seconds)
            for event, reply in zip(batch, replies):
                result = DeliveryResult(event.id, reply.status, reply.error)
                self.log(
                    "info" if result.delivered else "warning",
                    "webhook attempt",
                    event_id=event.id,
                    status=reply.status,
                    error=reply.error[:100],
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


class CheckpointBehaviour(SettlementBehaviour):
    """Vote for the state the period commits."""

    matching_round = CheckpointRound

    def async_act(self) -> Generator:
        """Every agent derives the same checkpoint and state from agreed data."""
        data = self.synchronized_data
        checkpoint, digest, _ = state_digest(
            committed_checkpoint(data), data, self.params.settings.webhook_max_attempts
        )
        self.log("info", "checkpoint", period=data.period_count, block=checkpoint)
        payload = CheckpointPayload(self.context.agent_address, checkpoint_vote(checkpoint), digest)
        yield from self.finish(payload)


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
