"""Tests of DeliverWebhookBehaviour and CheckpointBehaviour with the framework's FSMBehaviourBaseCase.

The keeper's requests go to our `webhook_client` connection; the fake merchant
answers them through the skill's HTTP handler (see test_behaviours.py). Block
time is the timestamp of the round's first block, set on the round sequence.
"""

# pylint: disable=protected-access,attribute-defined-outside-init

import datetime
import hashlib
import json
import logging
import logging.config
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import yaml
from standardwebhooks import Webhook

from packages.settleproof.skills.settlement_abci.agreement import Agreement, Payment
from packages.settleproof.skills.settlement_abci import behaviours as behaviours_module
from packages.settleproof.skills.settlement_abci.behaviours import (
    CheckpointBehaviour,
    DedupeBehaviour,
    DeliverWebhookBehaviour,
    RecoverStateBehaviour,
    SelectKeeperBehaviour,
)
from packages.settleproof.skills.settlement_abci import delivery as delivery_module
from packages.settleproof.skills.settlement_abci.delivery import WEBHOOK_CLIENT, delivery_budget
from packages.settleproof.skills.settlement_abci.metrics import WebhookMetrics
from packages.settleproof.skills.settlement_abci.outbox import (
    DeliveryResult,
    OutboxEntry,
    dumps,
    dumps_processed,
    load_results,
)
from packages.settleproof.skills.settlement_abci.payloads import (
    CheckpointPayload,
    DeliverWebhookPayload,
    RecoverStatePayload,
)
from packages.settleproof.skills.settlement_abci.recovery import CommittedState
from packages.settleproof.skills.settlement_abci.rounds import (
    Event,
    FinishedSettlementRound,
    SynchronizedData,
    enqueued_state,
    next_state,
    with_state,
)
from packages.settleproof.skills.settlement_abci.behaviour_base import RPC_CLIENT
from packages.settleproof.skills.settlement_abci.dedupe import derive_events
from packages.settleproof.skills.settlement_abci.store import Checkpoint, Store
from packages.settleproof.skills.settlement_abci.tests.test_behaviours import (
    AGENT,
    RPC_A,
    RPC_B,
    RPC_C,
    Provider,
    SECRET,
    SECRET_NEXT,
    WEBHOOK_URL,
    FakeNetwork,
    SettlementFSMBehaviourBaseCase,
    expected_body,
    parse_headers,
    same_payload,
    sent_payload,
    sync_data,
)
from packages.settleproof.skills.settlement_abci.tests.test_rounds import (
    block_hash,
    committed,
    digest_of,
    make_invoice,
    make_payment,
)
from packages.valory.protocols.http import HttpMessage
from packages.valory.skills.abstract_round_abci.behaviour_utils import (
    make_degenerate_behaviour,
)


NOW = 1_700_000_000  # block time of the keeper round


def outbox_entry(payment: Payment, uuid: str, attempts: int = 0, next_attempt_at: int = NOW - 10) -> OutboxEntry:
    """An outbox entry as Dedupe stores it, due at `next_attempt_at`."""
    body = json.dumps(expected_body(uuid, payment), separators=(",", ":"))
    return OutboxEntry(
        f"{uuid}:{payment.transfer.tx_hash}", body, attempts, created_at=NOW - 100, next_attempt_at=next_attempt_at
    )


ENTRIES = [
    outbox_entry(make_payment(101, n=1), "inv-a"),
    outbox_entry(make_payment(102, n=2), "inv-b", attempts=2),
    outbox_entry(make_payment(103, n=3), "inv-c"),
    outbox_entry(make_payment(104, n=4), "inv-d"),
    outbox_entry(make_payment(105, n=5), "inv-e"),
    outbox_entry(make_payment(106, n=6), "inv-f"),
]
NOT_DUE = outbox_entry(make_payment(107, n=7), "inv-later", attempts=1, next_attempt_at=NOW + 1)

#: How the merchant answers each invoice: (status, body, headers), or None for no answer at all.
ANSWERS: Dict[str, Optional[Tuple[int, bytes, str]]] = {
    "inv-a": (200, b"ok", ""),
    "inv-b": (503, b"busy", "Retry-After: 120\r\n"),
    "inv-c": (600, b"ClientConnectorError: Cannot connect to host merchant.test", ""),
    "inv-d": None,
    "inv-e": (410, b"gone", ""),
    "inv-f": (302, b"", "Location: http://elsewhere.test/\r\n"),
    "inv-later": (200, b"ok", ""),
}


class Merchant:
    """Verifies every request as a Standard Webhooks receiver would, then answers per ANSWERS."""

    def __init__(self, secrets: List[str]) -> None:
        """Verify with each of the secrets."""
        self.secrets = secrets
        self.received: List[Tuple[Dict[str, str], bytes]] = []

    def __call__(self, request: HttpMessage) -> Optional[Tuple[int, bytes, str]]:
        """Check the request, record it, answer."""
        assert request.method == "POST" and request.url == WEBHOOK_URL
        headers = parse_headers(request.headers)
        for secret in self.secrets:
            assert Webhook(secret).verify(request.body, headers)["id"] == headers["webhook-id"]
        self.received.append((headers, request.body))
        return ANSWERS[json.loads(request.body)["data"]["invoice_uuid"]]


class WebhookFSMBehaviourBaseCase(SettlementFSMBehaviourBaseCase):
    """Requests go to webhook_client and replies come from it; the store lives in a temporary folder."""

    http_connection = WEBHOOK_CLIENT

    @pytest.fixture(autouse=True)
    def data_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
        """Each test gets its own store; the block time is NOW."""
        monkeypatch.setitem(self.params.__dict__, "settings", replace(self.params.settings, data_dir=str(tmp_path)))
        round_sequence = self.skill.skill_context.state.round_sequence
        monkeypatch.setattr(
            round_sequence, "_last_round_transition_timestamp", datetime.datetime.fromtimestamp(NOW), raising=False
        )
        yield tmp_path
        self.skill.skill_context.durable_store.teardown()

    @property
    def metrics(self) -> WebhookMetrics:
        """The skill's webhook metrics."""
        return self.skill.skill_context.metrics.webhooks


# --------------------------------------------------------------------------- DeliverWebhook


class TestDeliverWebhookBehaviour(WebhookFSMBehaviourBaseCase):
    """The keeper POSTs the due entries with Standard Webhooks headers and reports what happened."""

    def deliver(
        self, outbox: List[OutboxEntry], keeper: str = AGENT, secrets: Optional[List[str]] = None
    ) -> Tuple[Merchant, List[List[HttpMessage]], Any]:
        """Run the behaviour as the given keeper with `outbox` waiting."""
        self.go_to(DeliverWebhookBehaviour, sync_data(most_voted_keeper_address=keeper, outbox=dumps(outbox)))
        merchant = Merchant(secrets or [SECRET])
        with self.capture_payload() as send:
            batches = self.serve(FakeNetwork({}, webhook=merchant))
        return merchant, batches, sent_payload(send)

    def test_keeper_posts_due_events_and_reports_outcomes_on_block_time(self) -> None:
        """Every request verifies and carries the stored id and body; the not-yet-due entry is not sent;
        each failure is rescheduled from NOW, a 503's Retry-After is honoured."""
        before = {o: self.metrics.value("webhook_deliveries_total", outcome=o) for o in ("delivered", "retry", "gone")}
        merchant, batches, payload = self.deliver([*ENTRIES, NOT_DUE])
        assert [len(b) for b in batches] == [6]
        by_id = {e.id: e for e in ENTRIES}
        assert sorted(h["webhook-id"] for h, _ in merchant.received) == sorted(by_id)
        for headers, body in merchant.received:
            entry = by_id[headers["webhook-id"]]
            assert body == entry.body.encode()
            assert headers["Idempotency-Key"] == entry.id
            assert headers["Content-Type"] == "application/json"
            assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
        assert isinstance(payload, DeliverWebhookPayload) and payload.sender == AGENT
        report = {r.id: r for r in load_results(payload.delivery_report)}
        assert set(report) == set(by_id)
        assert all(r.attempted_at == NOW for r in report.values())
        a, b, c, d, e, f = (report[entry.id] for entry in ENTRIES)
        assert (a.status, a.retry_at) == (200, 0)
        assert b.status == 503 and b.retry_at >= NOW + 120
        assert (c.status, c.error) == (0, "ClientConnectorError: Cannot connect to host merchant.test")
        assert d.status == 0 and d.error.startswith("timed out")
        assert e.status == 410 and f.status == 302
        for result in (c, d, f):
            assert NOW <= result.retry_at <= NOW + 30  # first retry window: base 30 s
        after = {o: self.metrics.value("webhook_deliveries_total", outcome=o) for o in before}
        assert {o: after[o] - before[o] for o in before} == {"delivered": 1, "retry": 4, "gone": 1}
        self.finish_round(Event.DONE, CheckpointBehaviour)

    def test_concurrency_bounds_requests_in_flight(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """webhook_concurrency=4: four go out, then the next two as replies free their places."""
        monkeypatch.setitem(self.params.__dict__, "webhook_concurrency", 4)
        merchant, batches, payload = self.deliver(ENTRIES)
        assert [len(b) for b in batches] == [4, 2]
        assert len(load_results(payload.delivery_report)) == 6 == len(merchant.received)

    def test_period_budget_caps_what_is_sent(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A 9 s keeper round leaves 4 s for POSTs. Concurrency 2, and each reply takes the merchant 1.6 s
        (the keeper's clock moves as it answers): two waves fit (3.2 s), a third would start with under
        1 s left, so the last two entries stay due for the next period."""
        monkeypatch.setitem(self.params.__dict__, "round_timeout_seconds", 9.0)
        monkeypatch.setitem(self.params.__dict__, "webhook_concurrency", 2)
        assert delivery_budget(9.0) == 4.0
        now = [1000.0]
        monkeypatch.setattr(delivery_module, "clock", lambda: now[0])
        merchant = Merchant([SECRET])

        def slow(request: HttpMessage) -> Optional[Tuple[int, bytes, str]]:
            now[0] += 0.8  # two replies per wave: 1.6 s a wave
            return merchant(request)

        entries = [ENTRIES[0], ENTRIES[1], ENTRIES[4], ENTRIES[5], replace(ENTRIES[2], id="x:0x1"),
                   replace(ENTRIES[3], id="y:0x2")]
        self.go_to(DeliverWebhookBehaviour, sync_data(most_voted_keeper_address=AGENT, outbox=dumps(entries)))
        with self.capture_payload() as send:
            batches = self.serve(FakeNetwork({}, webhook=slow))
        assert [len(b) for b in batches] == [2, 2]
        assert len(load_results(sent_payload(send).delivery_report)) == 4 == len(merchant.received)

    def test_a_request_is_cut_to_what_is_left_of_the_budget(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a 15 s webhook timeout and a 20 s round (13.3 s budget), requests still start after the first
        wave, each waiting at most what is left; one never answered is a timeout after that, not 15 s."""
        monkeypatch.setitem(self.params.__dict__, "round_timeout_seconds", 20.0)
        monkeypatch.setitem(self.params.__dict__, "webhook_concurrency", 1)
        merchant, batches, payload = self.deliver([ENTRIES[0], ENTRIES[3]])  # inv-d is never answered
        assert [len(b) for b in batches] == [1, 1]
        a, d = sorted(load_results(payload.delivery_report), key=lambda r: r.id)
        assert a.status == 200 and d.status == 0
        assert d.error.startswith("timed out after") and float(d.error.split()[-1].rstrip("s")) < 13.4

    def test_max_per_period_caps_what_is_sent(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """webhook_max_per_period=2: the two longest-waiting due entries go out."""
        monkeypatch.setitem(self.params.__dict__, "webhook_max_per_period", 2)
        oldest = [replace(ENTRIES[4], next_attempt_at=NOW - 50), replace(ENTRIES[0], next_attempt_at=NOW - 40)]
        _, _, payload = self.deliver([*oldest, ENTRIES[1], ENTRIES[2]])
        assert {r.id for r in load_results(payload.delivery_report)} == {e.id for e in oldest}

    def test_nothing_due_sends_an_empty_report(self) -> None:
        """A keeper round with nothing due still reports, so the round ends at once."""
        merchant, batches, payload = self.deliver([NOT_DUE])
        assert batches == [] and merchant.received == []
        assert payload.delivery_report == "[]"

    def test_non_keeper_sends_nothing(self) -> None:
        """agent_2 is the keeper: this agent neither POSTs nor sends a payload, and just waits for the round."""
        self.go_to(DeliverWebhookBehaviour, sync_data(most_voted_keeper_address="agent_2", outbox=dumps(ENTRIES)))
        with self.capture_payload() as send:
            self.behaviour.act_wrapper()
            self.behaviour.act_wrapper()
        send.assert_not_called()
        self.assert_quantity_in_outbox(0)
        self.assert_quantity_in_decision_making_queue(0)
        self._test_done_flag_set()
        self.end_round(Event.DONE)
        assert self.current.behaviour_id == CheckpointBehaviour.auto_behaviour_id()


class TestDeliverWebhookDuringRotation(WebhookFSMBehaviourBaseCase):
    """With SETTLEPROOF_WEBHOOK_SECRET_NEXT set, each request carries two signatures."""

    settings_overrides = {"webhook_secret_next": SECRET_NEXT}

    def test_both_secrets_verify(self) -> None:
        """A receiver with either the old or the new secret accepts every request."""
        self.go_to(DeliverWebhookBehaviour, sync_data(most_voted_keeper_address=AGENT, outbox=dumps(ENTRIES[:1])))
        merchant = Merchant([SECRET, SECRET_NEXT])
        verified = self.metrics.value("invoice_verification_latency_seconds_count")
        with self.capture_payload() as send:
            self.serve(FakeNetwork({}, webhook=merchant))
        # the 2xx is the verification: its latency runs from the entry's creation (block time)
        assert self.metrics.value("invoice_verification_latency_seconds_count") - verified == 1
        ((headers, _),) = merchant.received
        assert len(headers["webhook-signature"].split(" ")) == 2
        assert load_results(sent_payload(send).delivery_report) == [DeliveryResult(ENTRIES[0].id, 200, "", NOW, 0)]
        self.finish_round(Event.DONE, CheckpointBehaviour)


# --------------------------------------------------------------------------- Checkpoint


AEA_CONFIG = Path(__file__).parents[3] / "agents" / "settleproof" / "aea-config.yaml"


def logged(caplog: pytest.LogCaptureFixture, message: str) -> List[logging.LogRecord]:
    """The captured records with this message (their fields are attributes)."""
    return [record for record in caplog.records if record.getMessage() == message]


def agent_log_formatter() -> logging.Formatter:
    """The formatter the agent's `logging_config` builds for its log file and console."""
    config = next(yaml.safe_load_all(AEA_CONFIG.read_text()))["logging_config"]
    return logging.config.DictConfigurator({}).configure_formatter(dict(config["formatters"]["json"]))


class TestCheckpointBehaviour(WebhookFSMBehaviourBaseCase):
    """CheckpointBehaviour votes for the state the round will commit, and stores it once committed."""

    http_connection = RPC_CLIENT  # the new checkpoint's block hash comes from the providers
    delivered = ENTRIES[0]
    dying = replace(ENTRIES[1], attempts=9)
    gone = replace(ENTRIES[4], attempts=1, last_status=410)  # a keeper's 410, which this one confirms
    waiting = NOT_DUE
    report = [
        DeliveryResult(delivered.id, 200, "", NOW),
        DeliveryResult(dying.id, 503, "", NOW, NOW + 60),
        DeliveryResult(gone.id, 410, "", NOW, NOW + 10),
    ]
    processed = {e.id: 100 for e in (delivered, dying, gone, waiting)}
    providers = {url: Provider(blocks={110: (block_hash(110), NOW)}) for url in (RPC_A, RPC_B, RPC_C)}

    def period_data(self) -> SynchronizedData:
        """Checkpoint 99, scan 100..110, period 3, with the report above."""
        return sync_data(
            3,
            checkpoint=99,
            agreement=Agreement(100, 110).to_json(),
            outbox=dumps([self.delivered, self.dying, self.gone, self.waiting]),
            processed_keys=dumps_processed(self.processed),
            delivery_report=dumps(self.report),
        )

    def vote(self, data: SynchronizedData, network: Optional[FakeNetwork] = None) -> CheckpointPayload:
        """Run the behaviour until it sent its payload, answering its block-hash requests."""
        self.go_to(CheckpointBehaviour, data)
        with self.capture_payload() as send:
            self.serve(network or FakeNetwork(self.providers))
        return sent_payload(send)

    def end_round(self, done_event: Event, committed: Optional[SynchronizedData] = None) -> None:  # type: ignore[override]
        """End the round; with `committed`, first store in it what CheckpointRound stores on DONE."""
        if committed is not None:
            params = self.params
            with_state(committed, next_state(
                110, block_hash(110), committed, params.outbox_policy, params.processed_retention_blocks
            ))
        self.mock_a2a_transaction()
        self._test_done_flag_set()
        super().end_round(done_event)

    def test_votes_for_the_applied_report_and_stores_it_once_committed(self, data_dir: Path) -> None:
        """Vote 110, its block hash and the digest of (delivered removed, 503 at attempt 10 and 410
        dead-lettered); once the round commits that state, the store holds it and the metrics count it."""
        dlq = {r: self.metrics.value("webhook_dlq_total", reason=r) for r in ("gone", "max_attempts")}
        attempts = self.metrics.value("webhook_attempts_per_event_count")
        data = self.period_data()
        payload = self.vote(data)
        expected_dead = [
            replace(self.dying, attempts=10, last_status=503, last_attempt_at=NOW, next_attempt_at=NOW + 60,
                    dead_reason="max_attempts"),
            replace(self.gone, attempts=2, last_status=410, last_attempt_at=NOW, next_attempt_at=NOW + 10,
                    dead_reason="gone"),
        ]
        before = digest_of(99, [self.delivered, self.dying, self.gone, self.waiting], [], self.processed, 0)
        summary = json.dumps({"count": 2, "digest": hashlib.sha256(dumps(expected_dead).encode()).hexdigest()},
                             separators=(",", ":"))
        digest = digest_of(110, [self.waiting], expected_dead, self.processed, 1, block_hash(110), before, summary)
        assert same_payload(payload, CheckpointPayload(AGENT, 110, block_hash(110), digest))
        assert not (data_dir / "settleproof.sqlite3").exists()  # nothing is stored before the round ends
        self.end_round(Event.DONE, committed=data)
        assert self.current.behaviour_id == make_degenerate_behaviour(FinishedSettlementRound).auto_behaviour_id()
        store = Store.open(data_dir)
        assert store.checkpoint() == Checkpoint(110, block_hash(110), 3, 1)
        assert store.outbox() == [self.waiting]
        assert store.dead_letters() == sorted(expected_dead, key=lambda e: (e.last_attempt_at, e.id))
        assert store.committed_state() is not None and store.committed_state().digest == digest
        assert store.processed_count() == 4
        store.close()
        assert {r: self.metrics.value("webhook_dlq_total", reason=r) - dlq[r] for r in dlq} == {
            "gone": 1, "max_attempts": 1
        }
        assert self.metrics.value("webhook_attempts_per_event_count") - attempts == 3  # delivered + 2 dead
        assert self.metrics.value("webhook_outbox_depth") == 1
        assert self.metrics.value("webhook_dlq_depth") == 2
        assert self.metrics.value("settlement_checkpoint_block") == 110
        assert self.metrics.value("settlement_commit_seq") == 1

    def test_a_state_too_large_to_recover_is_warned_about(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A committed state above what one consensus transaction carries: the operator is told."""
        monkeypatch.setattr(behaviours_module, "RECOVERY_LIMIT_BYTES", 100)
        with caplog.at_level(logging.WARNING):
            self.vote(self.period_data())
        assert "committed state too large to share at a recovery" in caplog.text

    def test_silent_keepers_are_recorded_in_the_store(self, data_dir: Path) -> None:
        """Period 3 saw one failover: its first keeper (sorted participants[3 % 4]) was silent."""
        data = self.period_data()
        data.db.update(keeper_failovers=1)
        self.vote(data)
        self.end_round(Event.DONE, committed=data)
        store = Store.open(data_dir)
        assert store.keeper_health() == {sorted(data.participants)[3]: (1, 3)}
        store.close()

    def test_unknown_hash_is_voted_empty(self) -> None:
        """The providers do not agree on block 110's hash: the vote carries "" (unknown), not a guess."""
        split = {url: Provider(blocks={110: ("0x" + f"{i:064x}", NOW)}) for i, url in enumerate((RPC_A, RPC_B, RPC_C))}
        payload = self.vote(self.period_data(), FakeNetwork(split))
        assert payload.block_hash == ""

    def test_unmoved_checkpoint_keeps_its_hash_without_asking(self) -> None:
        """Nothing scanned (range 100..99): the checkpoint and its stored hash stay; no RPC at all."""
        network = FakeNetwork(self.providers)
        data = sync_data(3, checkpoint=99, checkpoint_hash=block_hash(99), agreement=Agreement(100, 99).to_json())
        payload = self.vote(data, network)
        assert (payload.checkpoint, payload.block_hash) == (99, block_hash(99))
        assert network.requests == []

    def test_reorg_halt_is_logged_and_counted(self, caplog: pytest.LogCaptureFixture) -> None:
        """FetchLogs found block 99 gone: the vote keeps 99, and the error names the block."""
        data = sync_data(
            3, checkpoint=99, checkpoint_hash=block_hash(99), agreement=Agreement(100, 99).to_json(), reorg_block=99
        )
        before = self.metrics.value("chain_reorg_detected_total")
        with caplog.at_level(logging.ERROR):
            payload = self.vote(data)
        assert payload.checkpoint == 99
        (halted,) = logged(caplog, "halted: the chain no longer holds the checkpoint block; not advancing")
        assert halted.block == 99 and halted.levelname == "ERROR"
        # What the round commits: the same state, one more commit.
        data.db.update(commit_seq=1, commit_parent=data.committed_state.digest)
        self.mock_a2a_transaction()
        self._test_done_flag_set()
        super().end_round(Event.DONE)
        assert self.metrics.value("chain_reorg_detected_total") - before == 1
        assert self.metrics.value("chain_reorg_halted_block") == 99

    def test_nothing_is_stored_when_the_round_commits_something_else(
        self, data_dir: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """NO_MAJORITY leaves the old state in place: the vote is not written to the store."""
        self.vote(self.period_data())
        with caplog.at_level(logging.WARNING):
            self.end_round(Event.NO_MAJORITY)
        assert not (data_dir / "settleproof.sqlite3").exists()
        assert "state not stored" in caplog.text

    def test_an_unusable_store_is_reported_not_fatal(self, data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A store that breaks while running is logged as an error; the agent goes on (a damaged store
        found at start-up stops the agent instead: see test_models)."""
        (data_dir / "settleproof.sqlite3").write_bytes(b"not a database" * 100)
        data = self.period_data()
        self.vote(data)
        with caplog.at_level(logging.ERROR):
            self.end_round(Event.DONE, committed=data)
        (failed,) = logged(caplog, "durable store not written")
        assert "not a usable SettleProof store" in failed.error

    def test_log_lines_are_json_with_the_event_fields(self, caplog: pytest.LogCaptureFixture) -> None:
        """Through the agent's own formatter, each line is one JSON object naming the round, period,
        agent and the event's invoice and transaction; never the secret or the webhook body."""
        data = self.period_data()
        self.vote(data)
        with caplog.at_level(logging.INFO):
            self.end_round(Event.DONE, committed=data)
        formatter = agent_log_formatter()
        lines = [formatter.format(record) for record in caplog.records]
        records = {entry["message"]: entry for entry in map(json.loads, lines)}
        delivered, dead = records["webhook delivered"], records["webhook dead-lettered"]
        assert {k: delivered[k] for k in ("level", "round", "period", "agent", "event_id", "attempts")} == {
            "level": "INFO", "round": "checkpoint_round", "period": 3, "agent": AGENT,
            "event_id": self.delivered.id, "attempts": 1,
        }
        assert f"{delivered['invoice_uuid']}:{delivered['tx_hash']}" == self.delivered.id
        assert dead["level"] == "ERROR" and dead["reason"] in ("gone", "max_attempts")
        assert datetime.datetime.fromisoformat(delivered["time"]).tzinfo is not None
        for line in lines:
            assert SECRET not in line and self.delivered.body not in line

    def test_a_field_named_like_a_record_attribute_is_kept_renamed(self, caplog: pytest.LogCaptureFixture) -> None:
        """`name` or `module` would clash with the log record's own attributes: they get a trailing "_"."""
        self.go_to(CheckpointBehaviour, self.period_data())
        with caplog.at_level(logging.INFO):
            self.behaviour.current_behaviour.log("info", "probe", name="x", module="y")
        (probe,) = logged(caplog, "probe")
        assert (probe.name_, probe.module_, probe.round) == ("x", "y", "checkpoint_round")

    def test_first_period_without_agreement_votes_minus_one(self) -> None:
        """Nothing agreed yet (-1..-2) and no checkpoint: vote -1 (no checkpoint) with an empty state."""
        payload = self.vote(sync_data(agreement=Agreement(-1, -2).to_json()))
        first = digest_of(None, [], [], {}, 1, "", digest_of(None, [], [], {}, 0))
        assert same_payload(payload, CheckpointPayload(AGENT, -1, "", first))


# --------------------------------------------------------------------------- RecoverState


class TestRecoverStateBehaviour(WebhookFSMBehaviourBaseCase):
    """RecoverStateBehaviour reports the newer of the stored and the synchronized committed state."""

    def report(self, data: SynchronizedData) -> CommittedState:
        """Run the behaviour to its payload; return the reported state."""
        self.go_to(RecoverStateBehaviour, data)
        with self.capture_payload() as send:
            self.behaviour.act_wrapper()
        payload = sent_payload(send)
        assert isinstance(payload, RecoverStatePayload)
        self.finish_round(Event.DONE, SelectKeeperBehaviour)
        return CommittedState.from_json(payload.state)

    def test_reports_the_stored_state(self, data_dir: Path) -> None:
        """A restarted agent (empty synchronized state) reports exactly what its store holds."""
        stored = committed(6, 140, dumps([ENTRIES[0]]))
        store = Store.open(data_dir)
        store.commit(stored, period=2)
        store.close()
        assert self.report(sync_data()) == stored

    def test_reports_the_synchronized_state_when_newer(self, data_dir: Path) -> None:
        """Registration after an error keeps synchronized state at commit 9: that is reported."""
        store = Store.open(data_dir)
        store.commit(committed(6, 140), period=2)
        store.close()
        assert self.report(sync_data(checkpoint=150, commit_seq=9)).seq == 9

    def test_an_unreadable_store_reports_the_synchronized_state(
        self, data_dir: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A store damaged since start-up is logged; the agent still reports (an empty state)."""
        (data_dir / "settleproof.sqlite3").write_bytes(b"not a database" * 100)
        with caplog.at_level(logging.ERROR):
            assert self.report(sync_data()) == CommittedState()
        assert "durable store unreadable" in caplog.text


# --------------------------------------------------------------------------- Dedupe (storing)


class TestDedupeBehaviourStores(WebhookFSMBehaviourBaseCase):
    """Once the Dedupe round recorded new events, every agent stores them before the keeper POSTs."""

    def test_new_events_are_stored_as_a_commit_before_delivery(self, data_dir: Path) -> None:
        """Scan 100..110 pays inv-a: the round's state (one more commit, the event queued and processed,
        checkpoint unchanged) is in the store when the DeliverWebhook round starts."""
        payment = make_payment(105, n=1)
        agreement = Agreement(100, 110, (payment,), (make_invoice("inv-a", 1000),))
        data = sync_data(3, checkpoint=99, commit_seq=4, agreement=agreement.to_json())
        self.go_to(DedupeBehaviour, data)
        self.behaviour.act_wrapper()
        expected = enqueued_state(data, derive_events(agreement, {}, 12).events, NOW)
        assert (expected.seq, expected.checkpoint) == (5, 99)
        with_state(data, expected)  # what DedupeRound commits
        self.finish_round(Event.DONE, DeliverWebhookBehaviour)
        store = Store.open(data_dir)
        assert store.committed_state() == expected
        assert store.processed_count() == 1
        assert [e.id for e in store.outbox()] == [f"inv-a:{payment.transfer.tx_hash}"]
        store.close()

    def test_nothing_new_stores_nothing(self, data_dir: Path) -> None:
        """No new events: no commit, no file."""
        self.go_to(DedupeBehaviour, sync_data(3, checkpoint=99, agreement=Agreement(100, 110).to_json()))
        self.behaviour.act_wrapper()
        self.finish_round(Event.NOTHING_TO_DELIVER, CheckpointBehaviour)
        assert not (data_dir / "settleproof.sqlite3").exists()
