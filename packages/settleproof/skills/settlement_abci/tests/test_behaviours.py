"""Tests of the settlement behaviours, with the framework's FSMBehaviourBaseCase.

Our behaviours send several HTTP requests at once (`http_parallel`), so instead of
the framework's one-request `mock_http_request` a small fake network answers every
request found in the outbox by its URL and JSON-RPC body, and delivers the replies
through the skill's HTTP handler (which dispatches them via `request_id_to_callback`).
The test agent is `test_agent_address` (the identity `BaseSkillTestCase` gives it).
"""

# pylint: disable=protected-access,too-many-arguments,attribute-defined-outside-init

import datetime
import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type, cast
from unittest import mock
from unittest.mock import MagicMock

import pytest

from packages.settleproof.skills.settlement_abci import settings_digest
from packages.settleproof.skills.settlement_abci.models import InvalidSettings
from packages.settleproof.skills.settlement_abci.outbox import EMPTY_DEAD_SUMMARY
from packages.settleproof.skills.settlement_abci.agreement import (
    Agreement,
    Observation,
    Payment,
)
from packages.settleproof.skills.settlement_abci.behaviour_base import (
    RPC_CLIENT,
    HttpReply,
    HttpRequest,
    SettlementBaseBehaviour,
)
from packages.settleproof.skills.settlement_abci.behaviours import (
    CheckpointBehaviour,
    DedupeBehaviour,
    DeliverWebhookBehaviour,
    FetchLogsQuorumBehaviour,
    KeeperFailoverBehaviour,
    RecoverStateBehaviour,
    SelectKeeperBehaviour,
    SettlementRoundBehaviour,
)
from packages.settleproof.skills.settlement_abci.models import Params
from packages.settleproof.skills.settlement_abci.payloads import (
    DedupePayload,
    FetchLogsQuorumPayload,
    KeeperFailoverPayload,
    SelectKeeperPayload,
)
from packages.settleproof.skills.settlement_abci.rounds import (
    DedupeRound,
    Event,
    SelectKeeperRound,
    SettlementAbciApp,
    SynchronizedData,
)
from packages.settleproof.skills.settlement_abci.tests.test_rounds import (
    PAYER,
    RECEIVER,
    TOKEN,
    make_invoice,
    make_payment,
    block_hash,
    make_transfer,
    tx_hash,
)
from packages.settleproof.skills.settlement_abci.transfers import (
    TRANSFER_TOPIC,
    Transfer,
    address_topic,
)
from packages.valory.protocols.http import HttpMessage
from packages.valory.skills.abstract_round_abci import behaviour_utils
from packages.valory.skills.abstract_round_abci.base import AbciAppDB
from packages.valory.skills.abstract_round_abci.behaviours import BaseBehaviour
from packages.valory.skills.abstract_round_abci.test_tools.base import (
    FSMBehaviourBaseCase,
)


PACKAGE_DIR = Path(__file__).parent.parent
AGENT = "test_agent_address"
PARTICIPANTS = ("agent_1", "agent_2", "agent_3", AGENT)  # already sorted: AGENT is keeper at period % 4 == 3

RPC_A, RPC_B, RPC_C = "http://rpc-a.test", "http://rpc-b.test", "http://rpc-c.test"
INVOICES_URL = "http://merchant.test/invoices?status=open&limit=100"
WEBHOOK_URL = "http://merchant.test/webhook"
OTHER_TOKEN = "0x" + "d4" * 20
# Test-only secrets: base64 of "test-only-not-a-real-secret" / "test-only-rotated-secret!!".
SECRET = "whsec_dGVzdC1vbmx5LW5vdC1hLXJlYWwtc2VjcmV0"
SECRET_NEXT = "whsec_dGVzdC1vbmx5LXJvdGF0ZWQtc2VjcmV0ISE="

#: The SETTLEPROOF_* args the skill.yaml leaves empty (they come from the environment in a deployment).
TEST_SETTINGS = {
    "rpc_endpoints": f"{RPC_A},{RPC_B},{RPC_C}",
    "rpc_quorum": "2",
    "token_address": TOKEN.upper().replace("0X", "0x"),
    "invoices_url": INVOICES_URL,
    "webhook_url": WEBHOOK_URL,
    "webhook_secret": SECRET,
    "confirmations": "12",
}

HEAD = 120  # safe head = 108 with 12 confirmations


def sync_data(period: int = 0, **values: Any) -> SynchronizedData:
    """Synchronized data of four participants (threshold 3) in the given period."""
    setup = {
        "participants": PARTICIPANTS,
        "all_participants": PARTICIPANTS,
        "consensus_threshold": 3,
        "safe_contract_address": "0x0",
        "checkpoint": None,
        "checkpoint_hash": "",
        "commit_seq": 0,
        "commit_parent": "",
        "processed_keys": "{}",
        "outbox": "[]",
        "dead_letters": "[]",
        "dead_letter_summary": EMPTY_DEAD_SUMMARY,
        "settings_digest": "",
    }
    db = AbciAppDB(
        setup_data=AbciAppDB.data_to_lists(setup),
        cross_period_persisted_keys=SettlementAbciApp.cross_period_persisted_keys,
    )
    for _ in range(period):
        db.create()
    db.update(**values)
    return SynchronizedData(db)


def raw_log(transfer: Transfer) -> Dict[str, Any]:
    """A provider's `eth_getLogs` entry for a transfer."""
    return {
        "address": transfer.token,
        "blockNumber": hex(transfer.block_number),
        "blockHash": transfer.block_hash,
        "transactionHash": transfer.tx_hash,
        "logIndex": hex(transfer.log_index),
        "topics": [TRANSFER_TOPIC, address_topic(transfer.sender), address_topic(transfer.receiver)],
        "data": "0x" + f"{transfer.value:064x}",
        "removed": False,
    }


# --------------------------------------------------------------------------- fake network


@dataclass
class Provider:
    """A JSON-RPC provider: `refused` answers like a connection error, `silent` never answers."""

    head: int = HEAD
    logs: List[Transfer] = field(default_factory=list)
    blocks: Dict[int, Tuple[str, int]] = field(default_factory=dict)
    refused: bool = False
    silent: bool = False


MERCHANT_INVOICES = [
    {"uuid": "inv-1", "token": TOKEN.upper().replace("0X", "0x"), "receiver": RECEIVER, "amount": "1000",
     "payer": None, "created_block": None, "note": "unknown fields are ignored"},
    {"uuid": "inv-other", "token": OTHER_TOKEN, "receiver": RECEIVER, "amount": "1"},  # token not watched
    {"uuid": "inv-bad", "token": TOKEN, "receiver": RECEIVER, "amount": "ten"},  # malformed
]
EXPECTED_INVOICES = (make_invoice("inv-1", 1000),)


@dataclass
class FakeNetwork:
    """The merchant and the providers; records every request it was sent."""

    providers: Dict[str, Provider]
    invoices_status: int = 200
    invoices: List[Dict[str, Any]] = field(default_factory=lambda: list(MERCHANT_INVOICES))
    webhook: Optional[Callable[[HttpMessage], Optional[Tuple[int, bytes]]]] = None
    requests: List[HttpMessage] = field(default_factory=list)

    def answer(self, request: HttpMessage) -> Optional[Tuple[int, bytes]]:
        """(status, body) for a request, or None for no answer at all."""
        self.requests.append(request)
        if request.url == INVOICES_URL:
            assert request.method == "GET"
            return self.invoices_status, json.dumps(self.invoices).encode()
        if request.url == WEBHOOK_URL:
            assert self.webhook is not None, "unexpected webhook"
            return self.webhook(request)
        provider = self.providers[request.url]
        if provider.silent:
            return None
        if provider.refused:
            return 600, b"Cannot connect to host: connection refused"
        rpc = json.loads(request.body)
        method, params = rpc["method"], rpc["params"]
        result: Any
        if method == "eth_blockNumber":
            result = hex(provider.head)
        elif method == "eth_getLogs":
            low, high = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
            result = [raw_log(t) for t in provider.logs if low <= t.block_number <= high]
        elif method == "eth_getBlockByNumber":
            number = int(params[0], 16)
            found = provider.blocks.get(number)
            result = None if found is None else {
                "number": hex(number), "hash": found[0], "timestamp": hex(found[1])
            }
        else:  # pragma: no cover
            raise AssertionError(f"unexpected RPC method {method}")
        return 200, json.dumps({"jsonrpc": "2.0", "id": rpc["id"], "result": result}).encode()

    def rpc_calls(self, method: str) -> List[Tuple[str, Any]]:
        """(url, params) of every JSON-RPC request with this method."""
        calls = []
        for request in self.requests:
            if request.url not in (INVOICES_URL, WEBHOOK_URL):
                rpc = json.loads(request.body)
                if rpc["method"] == method:
                    calls.append((request.url, rpc["params"]))
        return calls


@contextmanager
def clock_jump(seconds: float = 3600.0) -> Iterator[None]:
    """Make `wait_for_condition` see a later time, so a missing reply times out without sleeping."""
    real = datetime.datetime

    class Later(real):  # type: ignore[valid-type,misc]
        """datetime whose now() is `seconds` ahead."""

        @classmethod
        def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
            return real.now(tz) + datetime.timedelta(seconds=seconds)

    fake = SimpleNamespace(datetime=Later, timedelta=datetime.timedelta)
    with mock.patch.object(behaviour_utils, "datetime", fake):
        yield


def parse_headers(text: str) -> Dict[str, str]:
    """The http_client header string `Key: value\\r\\n...` as a dict."""
    headers = {}
    for line in text.split("\r\n"):
        if line:
            key, value = line.split(": ", 1)
            headers[key] = value
    return headers


# --------------------------------------------------------------------------- base case


class SettlementFSMBehaviourBaseCase(FSMBehaviourBaseCase):
    """Loads settlement_abci with test settings in place of the environment's."""

    path_to_skill = PACKAGE_DIR
    settings_overrides: Dict[str, str] = {}
    #: The connection the behaviour under test sends its HTTP requests to (RPC and invoice reads: rpc_client).
    http_connection = RPC_CLIENT

    @classmethod
    def setup_class(cls, **kwargs: Any) -> None:
        """Load the skill with valid SETTLEPROOF_* args."""
        args = {**TEST_SETTINGS, **cls.settings_overrides}
        super().setup_class(config_overrides={"models": {"params": {"args": args}}}, **kwargs)

    def setup_method(self, **kwargs: Any) -> None:
        """Each test starts with fresh provider breakers and metrics (an agent keeps them across periods)."""
        super().setup_method(**kwargs)
        self.skill.skill_context.rpc_health.reset()

    @property
    def params(self) -> Params:
        """The skill's params."""
        return cast(Params, self.skill.skill_context.params)

    @property
    def current(self) -> BaseBehaviour:
        """The current behaviour."""
        return cast(BaseBehaviour, self.behaviour.current_behaviour)

    def go_to(self, behaviour_cls: Type[BaseBehaviour], data: SynchronizedData) -> None:
        """Fast-forward to a behaviour with the given synchronized data."""
        self.fast_forward_to_behaviour(self.behaviour, behaviour_cls.auto_behaviour_id(), data)
        assert self.current.behaviour_id == behaviour_cls.auto_behaviour_id()

    def http_requests_in_outbox(self) -> List[HttpMessage]:
        """Take every message from the outbox; all of them must be HTTP requests to `http_connection`."""
        messages = []
        while self.get_quantity_in_outbox():
            message = self.get_message_from_outbox()
            assert isinstance(message, HttpMessage), message
            assert message.performative == HttpMessage.Performative.REQUEST
            assert message.to == self.http_connection
            messages.append(message)
        return messages

    def respond(self, request: HttpMessage, status: int, body: bytes, headers: str = "") -> None:
        """Deliver the connection's response to a request through the skill's HTTP handler."""
        incoming = self.build_incoming_message(
            message_type=HttpMessage,
            dialogue_reference=(request.dialogue_reference[0], "stub"),
            performative=HttpMessage.Performative.RESPONSE,
            target=request.message_id,
            message_id=-1,
            to=str(self.skill.skill_context.skill_id),
            sender=self.http_connection,
            version="",
            status_code=status,
            status_text="",
            headers=headers,
            body=body,
        )
        self.http_handler.handle(incoming)

    def serve(self, network: FakeNetwork, max_steps: int = 40) -> List[List[HttpMessage]]:
        """Act, answering every batch of HTTP requests, until the behaviour asks to sign its payload.

        Replies are delivered in reverse order, so a reply is matched to its request by
        its dialogue and never by arrival order. Returns the batches, in order.
        """
        batches = []
        jumps = 0
        self.behaviour.act_wrapper()
        for _ in range(max_steps):
            if self.get_quantity_in_decision_maker_inbox():
                return batches
            batch = self.http_requests_in_outbox()
            if batch:
                batches.append(batch)
                for request in reversed(batch):
                    reply = network.answer(request)
                    if reply is not None:
                        self.respond(request, *reply)
                self.behaviour.act_wrapper()
            else:  # waiting for replies that never come
                # each jump goes further, past deadlines set while the clock was already ahead
                jumps += 1
                with clock_jump(3600.0 * jumps):
                    self.behaviour.act_wrapper()
        raise AssertionError("the behaviour never sent its payload")

    @contextmanager
    def capture_payload(self) -> Iterator[mock.MagicMock]:
        """Record the payload the current behaviour sends, still sending it for real."""
        with mock.patch.object(
            self.current, "send_a2a_transaction", side_effect=self.current.send_a2a_transaction
        ) as send:
            yield send

    def finish_round(self, event: Event, next_behaviour: Type[BaseBehaviour]) -> None:
        """Complete the a2a transaction, end the round with `event` and check the next behaviour."""
        self.mock_a2a_transaction()
        self._test_done_flag_set()
        self.end_round(event)
        assert self.current.behaviour_id == next_behaviour.auto_behaviour_id()


def sent_payload(send: mock.MagicMock) -> Any:
    """The payload passed to send_a2a_transaction."""
    send.assert_called_once()
    return send.call_args[0][0]


def same_payload(actual: Any, expected: Any) -> bool:
    """Payload equality without the random `id_`."""
    return (type(actual), actual.sender, actual.data) == (type(expected), expected.sender, expected.data)


# --------------------------------------------------------------------------- SelectKeeper


class TestSelectKeeperBehaviour(SettlementFSMBehaviourBaseCase):
    """SelectKeeperBehaviour proposes sorted(participants)[period % n]."""

    @pytest.mark.parametrize("period, keeper", [(0, "agent_1"), (2, "agent_3"), (3, AGENT), (5, "agent_2")])
    def test_keeper_by_period(self, period: int, keeper: str) -> None:
        """The proposed keeper rotates with the period."""
        self.go_to(SelectKeeperBehaviour, sync_data(period))
        with self.capture_payload() as send:
            self.behaviour.act_wrapper()
        assert same_payload(sent_payload(send), SelectKeeperPayload(AGENT, keeper))
        self.assert_quantity_in_outbox(0)  # no HTTP at all
        self.finish_round(Event.DONE, FetchLogsQuorumBehaviour)

    def test_an_agent_whose_settings_differ_stops_naming_them(self, caplog: pytest.LogCaptureFixture) -> None:
        """The agents agreed on other confirmations than this agent's: it stops (no payload) with one
        line naming the class and its variables; with its own settings agreed it goes on."""
        own = self.skill.skill_context.params.settings_digests
        agreed = settings_digest.dumps({**own, "chain": "00" * 32})
        self.go_to(SelectKeeperBehaviour, sync_data(settings_digest=agreed))
        with caplog.at_level(logging.CRITICAL), self.capture_payload() as send, pytest.raises(InvalidSettings) as stop:
            self.behaviour.act_wrapper()
        send.assert_not_called()
        assert "differ from the other agents' in chain (SETTLEPROOF_CONFIRMATIONS" in str(stop.value)
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL] == [str(stop.value)]
        self.go_to(SelectKeeperBehaviour, sync_data(settings_digest=settings_digest.dumps(own)))
        with self.capture_payload() as send:
            self.behaviour.act_wrapper()
        assert sent_payload(send).keeper == "agent_1"


class TestRoundEntriesAreCounted(SettlementFSMBehaviourBaseCase):
    """Every behaviour counts its round's entry: keeper selections, failovers and retries."""

    def value(self, name: str, **labels: str) -> float:
        """A sample of the skill's registry (0 when never set)."""
        found = self.skill.skill_context.metrics.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def test_selection_failover_and_retry(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """SelectKeeper counts a selection; KeeperFailover a failover; FetchLogs entered after a
        failed Dedupe round counts a retry of dedupe_round, and after SelectKeeper none."""
        selections, failovers = self.value("keeper_selection_rounds_total"), self.value("keeper_failover_total")
        retries = self.value("consensus_round_retries_total", round="dedupe_round")
        app = self.skill.skill_context.state.round_sequence.abci_app
        self.go_to(SelectKeeperBehaviour, sync_data())
        self.go_to(KeeperFailoverBehaviour, sync_data())
        monkeypatch.setattr(app, "_previous_rounds", [SelectKeeperRound(sync_data(), MagicMock())])
        self.go_to(FetchLogsQuorumBehaviour, sync_data())
        assert self.value("consensus_round_retries_total", round="dedupe_round") == retries
        monkeypatch.setattr(app, "_previous_rounds", [DedupeRound(sync_data(), MagicMock())])
        self.go_to(FetchLogsQuorumBehaviour, sync_data())
        assert self.value("keeper_selection_rounds_total") - selections == 1
        assert self.value("keeper_failover_total") - failovers == 1
        assert self.value("consensus_round_retries_total", round="dedupe_round") - retries == 1


# --------------------------------------------------------------------------- FetchLogsQuorum


def honest_provider(*transfers: Transfer, **kwargs: Any) -> Provider:
    """A provider returning the transfers and their blocks' hashes and timestamps."""
    blocks = {t.block_number: (t.block_hash, 1_700_000_000 + t.block_number) for t in transfers}
    return Provider(logs=list(transfers), blocks=blocks, **kwargs)


class TestFetchLogsQuorumBehaviour(SettlementFSMBehaviourBaseCase):
    """FetchLogsQuorumBehaviour reads the merchant and a quorum of providers, then reports its observation."""

    def observe(self, network: FakeNetwork, data: SynchronizedData) -> Tuple[Observation, List[List[HttpMessage]]]:
        """Run the behaviour to its payload; return the observation and the request batches."""
        self.go_to(FetchLogsQuorumBehaviour, data)
        with self.capture_payload() as send:
            batches = self.serve(network)
        payload = sent_payload(send)
        assert isinstance(payload, FetchLogsQuorumPayload) and payload.sender == AGENT
        self.finish_round(Event.DONE, DedupeBehaviour)
        return Observation.from_json(payload.observation), batches

    def test_quorum_accepts_agreed_payment_and_ignores_a_lying_provider(self) -> None:
        """Checkpoint 99, head 120: scan 100..108; rpc-c's extra log (seen by one provider) is not accepted."""
        paid = make_transfer(105, n=1, value=1000)
        fake = make_transfer(106, n=2, value=5000)
        network = FakeNetwork(
            {RPC_A: honest_provider(paid), RPC_B: honest_provider(paid), RPC_C: honest_provider(paid, fake)}
        )
        observation, batches = self.observe(network, sync_data(checkpoint=99))
        assert observation == Observation(100, 108, (make_payment(105),), EXPECTED_INVOICES)
        # invoices first, then the head, the logs and the block of the accepted log, each batch in parallel
        assert [len(b) for b in batches] == [1, 3, 3, 3]
        assert batches[0][0].url == INVOICES_URL and batches[0][0].method == "GET"
        log_filter = {
            "fromBlock": hex(100),
            "toBlock": hex(108),
            "address": [TOKEN],
            "topics": [TRANSFER_TOPIC, None, [address_topic(RECEIVER)]],
        }
        assert sorted(network.rpc_calls("eth_getLogs")) == [(url, [log_filter]) for url in (RPC_A, RPC_B, RPC_C)]
        assert sorted(network.rpc_calls("eth_getBlockByNumber")) == [
            (url, [hex(105), False]) for url in (RPC_A, RPC_B, RPC_C)
        ]
        for request in batches[1]:
            assert parse_headers(request.headers) == {"Content-Type": "application/json"}

    def test_silent_and_refusing_providers(self) -> None:
        """rpc-c never answers (times out) and the others agree: the quorum of 2 still holds."""
        paid = make_transfer(105)
        network = FakeNetwork(
            {RPC_A: honest_provider(paid), RPC_B: honest_provider(paid), RPC_C: Provider(silent=True)}
        )
        observation, _ = self.observe(network, sync_data(checkpoint=99))
        assert observation == Observation(100, 108, (make_payment(105),), EXPECTED_INVOICES)

    def test_no_head_quorum(self) -> None:
        """Two providers refuse the connection: no quorum on the head, nothing scanned."""
        network = FakeNetwork(
            {RPC_A: honest_provider(), RPC_B: Provider(refused=True), RPC_C: Provider(refused=True)}
        )
        observation, _ = self.observe(network, sync_data(checkpoint=99))
        assert observation == Observation(100, 99, (), EXPECTED_INVOICES)
        assert network.rpc_calls("eth_getLogs") == []

    def test_merchant_unavailable(self) -> None:
        """The invoices endpoint answers 500: invoices are unknown and no logs are fetched."""
        network = FakeNetwork(
            {url: honest_provider(make_transfer(105)) for url in (RPC_A, RPC_B, RPC_C)}, invoices_status=500
        )
        observation, _ = self.observe(network, sync_data(checkpoint=99))
        assert observation == Observation(100, 99, (), None)
        assert network.rpc_calls("eth_getLogs") == []

    def test_undecided_log_stops_before_it(self) -> None:
        """rpc-a has a log rpc-b lacks, rpc-c is silent and could tip it: scan only up to 104."""
        paid = make_transfer(105)
        network = FakeNetwork(
            {RPC_A: honest_provider(paid), RPC_B: honest_provider(), RPC_C: Provider(silent=True)}
        )
        observation, _ = self.observe(network, sync_data(checkpoint=99))
        assert observation == Observation(100, 104, (), EXPECTED_INVOICES)
        assert network.rpc_calls("eth_getBlockByNumber") == []

    def test_no_log_quorum_scans_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Two providers answer eth_getLogs with garbage: fewer than 2 answers, nothing is trusted."""
        paid = make_transfer(105)
        network = FakeNetwork({url: honest_provider(paid) for url in (RPC_A, RPC_B, RPC_C)})
        answer = network.answer

        def garbage_logs(request: HttpMessage) -> Optional[Tuple[int, bytes]]:
            reply = answer(request)
            if request.url in (RPC_B, RPC_C) and b"eth_getLogs" in request.body:
                return 200, b"<html>bad gateway</html>"
            return reply

        monkeypatch.setattr(network, "answer", garbage_logs)
        observation, _ = self.observe(network, sync_data(checkpoint=99))
        assert observation == Observation(100, 99, (), EXPECTED_INVOICES)

    def test_block_hash_mismatch_stops_before_the_log(self) -> None:
        """The providers' block 105 has another hash than the log says (reorg): stop the range at 104."""
        paid = make_transfer(105)
        reorged = {105: ("0x" + "ee" * 32, 1_700_000_105)}
        network = FakeNetwork({url: Provider(logs=[paid], blocks=reorged) for url in (RPC_A, RPC_B, RPC_C)})
        observation, _ = self.observe(network, sync_data(checkpoint=99))
        assert observation == Observation(100, 104, (), EXPECTED_INVOICES)

    def test_first_start_reports_the_safe_head_only(self) -> None:
        """No checkpoint and no start block: report (-1, safe head 108) without scanning."""
        network = FakeNetwork({url: honest_provider(make_transfer(105)) for url in (RPC_A, RPC_B, RPC_C)})
        observation, batches = self.observe(network, sync_data(checkpoint=None))
        assert observation == Observation(-1, 108, (), EXPECTED_INVOICES)
        assert [len(b) for b in batches] == [1, 3]
        assert network.rpc_calls("eth_getLogs") == []

    def test_first_start_from_configured_start_block(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """SETTLEPROOF_START_BLOCK=104 and max 3 blocks per period: scan 104..106."""
        settings = replace(self.params.settings, start_block=104, max_blocks_per_period=3)
        monkeypatch.setitem(self.params.__dict__, "settings", settings)
        paid = make_transfer(105)
        network = FakeNetwork({url: honest_provider(paid) for url in (RPC_A, RPC_B, RPC_C)})
        observation, _ = self.observe(network, sync_data(checkpoint=None))
        assert observation == Observation(104, 106, (make_payment(105),), EXPECTED_INVOICES)
        assert {p[0]["fromBlock"] for _, p in network.rpc_calls("eth_getLogs")} == {hex(104)}
        assert {p[0]["toBlock"] for _, p in network.rpc_calls("eth_getLogs")} == {hex(106)}


    def test_anchor_hash_is_what_a_quorum_gives_the_checkpoint_block_now(self) -> None:
        """With a stored checkpoint hash, the observation also reports block 99's hash as the providers
        give it now (two of three say the same; rpc-c lies)."""
        paid = make_transfer(105)
        now_99 = (block_hash(99), 1_700_000_099)
        providers = {url: honest_provider(paid) for url in (RPC_A, RPC_B, RPC_C)}
        for url in (RPC_A, RPC_B):
            providers[url].blocks[99] = now_99
        providers[RPC_C].blocks[99] = ("0x" + "ee" * 32, 1_700_000_099)
        network = FakeNetwork(providers)
        observation, _ = self.observe(network, sync_data(checkpoint=99, checkpoint_hash="0x" + "dd" * 32))
        assert observation == Observation(100, 108, (make_payment(105),), EXPECTED_INVOICES, block_hash(99))
        assert sorted(p for _, p in network.rpc_calls("eth_getBlockByNumber") if p[0] == hex(99)) == [
            [hex(99), False]
        ] * 3

    def test_no_anchor_is_asked_without_a_stored_hash(self) -> None:
        """Before any hash is known nothing is checked: no request for the checkpoint block."""
        network = FakeNetwork({url: honest_provider(make_transfer(105)) for url in (RPC_A, RPC_B, RPC_C)})
        observation, _ = self.observe(network, sync_data(checkpoint=99))
        assert observation.anchor_hash == ""
        assert [p for _, p in network.rpc_calls("eth_getBlockByNumber") if p[0] == hex(99)] == []


# --------------------------------------------------------------------------- Dedupe


def events_digest(*events: Tuple[str, Dict[str, Any]]) -> str:
    """The Dedupe vote for (id, body) pairs, written out independently of `dedupe.NewEvents`."""
    pairs = [[event_id, json.dumps(body, separators=(",", ":"))] for event_id, body in sorted(events)]
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def expected_body(invoice_uuid: str, payment: Payment) -> Dict[str, Any]:
    """The invoice.paid body of the README for a payment, written out by hand."""
    transfer = payment.transfer
    return {
        "type": "invoice.paid",
        "id": f"{invoice_uuid}:{transfer.tx_hash}",
        "timestamp": datetime.datetime.fromtimestamp(payment.block_timestamp, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "data": {
            "invoice_uuid": invoice_uuid,
            "tx_hash": transfer.tx_hash,
            "log_index": transfer.log_index,
            "block_number": transfer.block_number,
            "block_hash": transfer.block_hash,
            "token": TOKEN,
            "from": PAYER,
            "to": RECEIVER,
            "amount": str(transfer.value),
            "confirmations": 12,
        },
    }


class TestDedupeBehaviour(SettlementFSMBehaviourBaseCase):
    """DedupeBehaviour derives the new events from the agreed data only."""

    def vote(self, agreement: Agreement, processed: Dict[str, int]) -> str:
        """Run the behaviour and return the events digest it votes for."""
        data = sync_data(agreement=agreement.to_json(), processed_keys=json.dumps(processed))
        self.go_to(DedupeBehaviour, data)
        round_sequence = self.skill.skill_context.state.round_sequence
        round_sequence._last_round_transition_timestamp = datetime.datetime.fromtimestamp(1_700_000_123.9)
        with self.capture_payload() as send:
            self.behaviour.act_wrapper()
        payload = sent_payload(send)
        assert isinstance(payload, DedupePayload) and payload.sender == AGENT
        assert payload.block_time == 1_700_000_123  # the block that started the round, whole seconds
        self.assert_quantity_in_outbox(0)
        self.finish_round(Event.DONE, DeliverWebhookBehaviour)
        return payload.events_digest

    def test_new_payments_become_events_sorted_by_id(self) -> None:
        """Two invoices, two payments: the vote is the digest of two events, ids `uuid:tx_hash`, bodies
        per the README (block 105 goes first and to the smallest uuid)."""
        first, second = make_payment(105, n=2), make_payment(107, n=1)
        agreement = Agreement(
            100, 110, (first, second), (make_invoice("inv-b", 1000), make_invoice("inv-a", 900))
        )
        assert self.vote(agreement, {}) == events_digest(
            (f"inv-a:{tx_hash(2)}", expected_body("inv-a", first)),
            (f"inv-b:{tx_hash(1)}", expected_body("inv-b", second)),
        )
        assert expected_body("inv-a", first)["timestamp"] == "2023-11-14T22:15:05Z"

    def test_used_transaction_is_dropped_and_counted(self) -> None:
        """The payment's tx already paid inv-old (a re-scanned block): no event, one duplicate counted."""
        before = self.metrics_value("duplicate_events_dropped_total")
        payment = make_payment(105, n=7)
        agreement = Agreement(100, 110, (payment,), (make_invoice("inv-1"),))
        assert self.vote(agreement, {f"inv-old:{tx_hash(7)}": 105}) == events_digest()
        assert self.metrics_value("duplicate_events_dropped_total") - before == 1

    def test_settled_invoice_is_not_settled_again(self) -> None:
        """inv-1 was paid by another tx and is still listed open: a second payment does not settle it."""
        agreement = Agreement(100, 110, (make_payment(105, n=8),), (make_invoice("inv-1"),))
        assert self.vote(agreement, {f"inv-1:{tx_hash(3)}": 50}) == events_digest()

    def test_nothing_agreed(self) -> None:
        """An empty agreement gives the digest of no events (still a payload, so the round can end)."""
        assert self.vote(Agreement(100, 99), {}) == events_digest()

    def metrics_value(self, name: str) -> float:
        """A sample of the skill's registry (0 when never set)."""
        found = self.skill.skill_context.metrics.registry.get_sample_value(name)
        return 0.0 if found is None else found


# --------------------------------------------------------------------------- KeeperFailover


class TestKeeperFailoverBehaviour(SettlementFSMBehaviourBaseCase):
    """KeeperFailoverBehaviour moves one step along sorted(participants)."""

    @pytest.mark.parametrize(
        "period, failovers, next_keeper",
        [(0, 0, "agent_2"), (1, 0, "agent_3"), (1, 2, "agent_1"), (0, 3, "agent_1")],
    )
    def test_next_keeper(self, period: int, failovers: int, next_keeper: str) -> None:
        """The proposal is sorted(participants)[(period + failovers + 1) % 4] with the count incremented."""
        data = sync_data(period, most_voted_keeper_address="agent_1", keeper_failovers=failovers)
        self.go_to(KeeperFailoverBehaviour, data)
        with self.capture_payload() as send:
            self.behaviour.act_wrapper()
        assert same_payload(sent_payload(send), KeeperFailoverPayload(AGENT, next_keeper, failovers + 1))
        self.finish_round(Event.DONE, DeliverWebhookBehaviour)

    def test_all_keepers_failed_leads_to_checkpoint(self) -> None:
        """After ALL_KEEPERS_FAILED the FSM moves on to the checkpoint."""
        self.go_to(KeeperFailoverBehaviour, sync_data(0, most_voted_keeper_address="agent_1", keeper_failovers=3))
        with self.capture_payload() as send:
            self.behaviour.act_wrapper()
        assert sent_payload(send).failovers == 4
        self.finish_round(Event.ALL_KEEPERS_FAILED, CheckpointBehaviour)


# --------------------------------------------------------------------------- shared parts


class TestHttpParallel(SettlementFSMBehaviourBaseCase):
    """behaviour_base.http_parallel: replies in request order, errors and timeouts as status 0."""

    def test_replies_by_position(self) -> None:
        """Three requests: a 404, a connection error (600) and no reply at all."""
        self.go_to(SelectKeeperBehaviour, sync_data())
        behaviour = cast(SettlementBaseBehaviour, self.current)
        requests = [
            HttpRequest("GET", "http://x.test/a"),
            HttpRequest("POST", "http://x.test/b", b"{}", {"X-Test": "1"}),
            HttpRequest("GET", "http://x.test/c"),
        ]
        generator = behaviour.http_parallel(requests, timeout=60)
        next(generator)
        sent = self.http_requests_in_outbox()
        assert [(m.method, m.url, m.body) for m in sent] == [
            ("GET", "http://x.test/a", b""),
            ("POST", "http://x.test/b", b"{}"),
            ("GET", "http://x.test/c", b""),
        ]
        assert sent[1].headers == "X-Test: 1\r\n"
        self.respond(sent[1], 600, b"  connection refused \n")
        self.respond(sent[0], 404, b"missing", "A: b\r\n")
        next(generator)  # still waiting for the third one
        with clock_jump(), pytest.raises(StopIteration) as stop:
            next(generator)
        assert stop.value.value == [
            HttpReply(404, b"missing", "A: b\r\n"),
            HttpReply(0, error="connection refused"),
            HttpReply(0, error="timed out"),
        ]
        assert not HttpReply(404).ok and HttpReply(204).ok and not HttpReply(0).ok


def test_round_behaviour_covers_every_round() -> None:
    """Each non-final round has its behaviour, and the FSM starts with RecoverState."""
    matched = {b.matching_round for b in SettlementRoundBehaviour.behaviours}
    assert matched == set(SettlementAbciApp.get_all_rounds()) - SettlementAbciApp.final_states
    assert SettlementRoundBehaviour.initial_behaviour_cls is RecoverStateBehaviour
    assert SettlementRoundBehaviour.abci_app_cls is SettlementAbciApp
