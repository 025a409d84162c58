"""FetchLogsQuorumBehaviour's RPC reliability through the framework: chunks, retries, breakers, metrics.

Same harness as `test_behaviours.py` (FSMBehaviourBaseCase and its fake
network); these tests look at what the agent keeps between periods (breakers,
metrics in the `rpc_health` model) and at the requests it sends.
"""

# pylint: disable=protected-access

import json
import logging
from typing import Any, List, Optional, Tuple, cast

import pytest

from packages.settleproof.skills.settlement_abci import observer
from packages.settleproof.skills.settlement_abci.agreement import Observation, Payment
from packages.settleproof.skills.settlement_abci.behaviours import (
    DedupeBehaviour,
    FetchLogsQuorumBehaviour,
)
from packages.settleproof.skills.settlement_abci.breaker import BreakerState
from packages.settleproof.skills.settlement_abci.models import (
    InvalidSettings,
    Params,
    RpcHealth,
)
from packages.settleproof.skills.settlement_abci.payloads import FetchLogsQuorumPayload
from packages.settleproof.skills.settlement_abci.rounds import Event
from packages.settleproof.skills.settlement_abci.rpc_reader import QuorumReader
from packages.settleproof.skills.settlement_abci.tests.test_behaviours import (
    EXPECTED_INVOICES,
    RPC_A,
    RPC_B,
    RPC_C,
    FakeNetwork,
    Provider,
    SettlementFSMBehaviourBaseCase,
    honest_provider,
    sent_payload,
    sync_data,
)
from packages.settleproof.skills.settlement_abci.tests.test_models import params_kwargs
from packages.settleproof.skills.settlement_abci.tests.test_rounds import (
    PAYER,
    RECEIVER,
    TOKEN,
    make_invoice,
    make_payment,
    make_transfer,
)
from packages.valory.protocols.http import HttpMessage


NAME_C = "rpc-c.test"


class TestFetchLogsReliability(SettlementFSMBehaviourBaseCase):
    """The observation survives faulty providers, and the agent remembers them."""

    @property
    def health(self) -> RpcHealth:
        """The agent-local RPC memory."""
        return cast(RpcHealth, self.skill.skill_context.rpc_health)

    def observe(self, network: FakeNetwork, checkpoint: int = 99) -> Tuple[Observation, List[List[HttpMessage]]]:
        """One FetchLogsQuorum period: its observation and request batches."""
        self.go_to(FetchLogsQuorumBehaviour, sync_data(checkpoint=checkpoint))
        with self.capture_payload() as send:
            batches = self.serve(network)
        payload = sent_payload(send)
        assert isinstance(payload, FetchLogsQuorumPayload)
        self.finish_round(Event.DONE, DedupeBehaviour)
        return Observation.from_json(payload.observation), batches

    def test_breaker_opens_and_stays_open_across_periods(self) -> None:
        """rpc-c refuses: three attempts in the first period open its breaker; the next period does not ask it."""
        paid = make_transfer(105)
        network = FakeNetwork({RPC_A: honest_provider(paid), RPC_B: honest_provider(paid), RPC_C: Provider(refused=True)})
        expected = Observation(100, 108, (make_payment(105),), EXPECTED_INVOICES)
        first, _ = self.observe(network)
        assert first == expected
        asked_c = [r for r in network.requests if r.url == RPC_C]
        assert len(asked_c) == 3
        breakers = self.health.breakers(3, 30.0)
        assert breakers[NAME_C].state is BreakerState.OPEN
        network.requests.clear()
        second, batches = self.observe(network)
        assert second == expected
        assert not [r for r in network.requests if r.url == RPC_C]
        assert [len(b) for b in batches] == [1, 2, 2, 2]
        metrics = self.health.metrics
        assert metrics.value("rpc_requests_total", provider=NAME_C, outcome="transport_error") == 3
        assert metrics.value("rpc_requests_total", provider=NAME_C, outcome="skipped") == 1
        assert metrics.value("rpc_circuit_breaker_state", provider=NAME_C) == BreakerState.OPEN.value
        assert metrics.value("rpc_provider_latency_ms_count", provider="rpc-a.test") == 6

    def test_logs_are_read_in_chunks_of_max_log_range(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """max_log_range=4: 100..108 is asked as 100..103, 104..107, 108..108, of every provider, in one batch."""
        monkeypatch.setitem(self.params.__dict__, "max_log_range", 4)
        paid = make_transfer(105)
        network = FakeNetwork({url: honest_provider(paid) for url in (RPC_A, RPC_B, RPC_C)})
        observation, batches = self.observe(network)
        assert observation == Observation(100, 108, (make_payment(105),), EXPECTED_INVOICES)
        assert [len(b) for b in batches] == [1, 3, 9, 3]
        spans = sorted({(p[0]["fromBlock"], p[0]["toBlock"]) for _, p in network.rpc_calls("eth_getLogs")})
        assert spans == [("0x64", "0x67"), ("0x68", "0x6b"), ("0x6c", "0x6c")]

    def test_a_range_refusal_splits_the_chunk_for_everybody(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """rpc-c refuses more than 3 blocks with Alchemy's words: the chunk is split where it suggests;
        rpc-a and rpc-b are not asked again, and the payment is still found."""
        paid = make_transfer(105)
        network = FakeNetwork({url: honest_provider(paid) for url in (RPC_A, RPC_B, RPC_C)})
        answer = network.answer

        def limited(request: HttpMessage) -> Optional[Tuple[int, bytes]]:
            rpc = json.loads(request.body) if request.url == RPC_C else {}
            if rpc.get("method") == "eth_getLogs":
                low, high = (int(rpc["params"][0][k], 16) for k in ("fromBlock", "toBlock"))
                if high - low + 1 > 3:
                    network.requests.append(request)
                    message = f"Log response size exceeded. this block range should work: [{hex(low)}, {hex(low + 2)}]"
                    error = {"jsonrpc": "2.0", "id": rpc["id"], "error": {"code": -32602, "message": message}}
                    return 200, json.dumps(error).encode()
            return answer(request)

        monkeypatch.setattr(network, "answer", limited)
        observation, _ = self.observe(network)
        assert observation == Observation(100, 108, (make_payment(105),), EXPECTED_INVOICES)
        calls = network.rpc_calls("eth_getLogs")
        assert [u for u, _ in calls].count(RPC_A) == 1 and [u for u, _ in calls].count(RPC_B) == 1
        assert sorted(p[0]["fromBlock"] for u, p in calls if u == RPC_C) == ["0x64", "0x64", "0x67", "0x6a"]
        assert self.health.metrics.value("rpc_log_range_splits_total", provider=NAME_C) == 1

    def test_a_failed_request_is_retried_after_the_policy_backoff(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """rpc-b answers its first eth_blockNumber with 503: retried after a framework sleep, then used."""
        paid = make_transfer(105)
        network = FakeNetwork({url: honest_provider(paid) for url in (RPC_A, RPC_B, RPC_C)})
        answer = network.answer
        failed: List[HttpMessage] = []

        def flaky(request: HttpMessage) -> Optional[Tuple[int, bytes]]:
            if request.url == RPC_B and not failed:
                failed.append(request)
                network.requests.append(request)
                return 503, b"busy"
            return answer(request)

        monkeypatch.setattr(network, "answer", flaky)
        observation, batches = self.observe(network)
        assert observation == Observation(100, 108, (make_payment(105),), EXPECTED_INVOICES)
        assert [len(b) for b in batches] == [1, 3, 1, 3, 3]
        assert batches[2][0].url == RPC_B
        breakers = self.health.breakers(3, 30.0)
        assert breakers["rpc-b.test"].state is BreakerState.CLOSED
        assert breakers["rpc-b.test"].consecutive_failures == 0

    def test_a_bug_in_the_reader_never_raises_out_of_the_round(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The pure reader raising is logged; the agent still reports an (empty) observation."""

        def broken(*_: Any) -> Any:
            raise KeyError("boom")
            yield  # pragma: no cover  # pylint: disable=unreachable

        monkeypatch.setattr(QuorumReader, "read_payments", broken)
        network = FakeNetwork({url: honest_provider(make_transfer(105)) for url in (RPC_A, RPC_B, RPC_C)})
        observation, _ = self.observe(network)
        assert observation == Observation(100, 99, (), EXPECTED_INVOICES)

    def test_metrics_share_the_skills_registry_when_there_is_one(self) -> None:
        """With a `metrics` model holding a registry, the RPC metrics are registered in it."""
        registry = self.health.metrics.registry
        assert registry.get_sample_value("rpc_quorum_checks_total", {"check": "head"}) is None
        network = FakeNetwork({url: honest_provider() for url in (RPC_A, RPC_B, RPC_C)})
        self.observe(network)
        assert registry.get_sample_value("rpc_quorum_checks_total", {"check": "head"}) == 1
        shared = getattr(self.skill.skill_context, "metrics", None)
        if shared is not None:
            assert registry is shared.registry


class TestObservationBounds(SettlementFSMBehaviourBaseCase):
    """What the merchant's list and the logs can put in an observation is bounded, logged and counted."""

    observe = TestFetchLogsReliability.observe

    def sample(self, name: str, **labels: str) -> float:
        """A sample of the skill's registry so far (it lives as long as the skill: compare before and after)."""
        value = self.skill.skill_context.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else float(value)

    def truncated(self, name: str) -> float:
        """inputs_truncated_total{input=name} so far."""
        return self.sample("inputs_truncated_total", input=name)

    def unpayable(self) -> float:
        """transfers_unpayable_total so far."""
        return self.sample("transfers_unpayable_total")

    def test_dust_is_left_out_before_its_block_is_read(self) -> None:
        """Below the invoice's amount: not in the observation, counted, and its block is never asked."""
        paid = make_transfer(105, n=1, value=1000)
        dust = make_transfer(103, n=2, value=999)
        network = FakeNetwork({url: honest_provider(paid, dust) for url in (RPC_A, RPC_B, RPC_C)})
        before = self.unpayable()
        observation, _ = self.observe(network)
        assert observation == Observation(100, 108, (make_payment(105),), EXPECTED_INVOICES)
        assert hex(103) not in {params[0] for _, params in network.rpc_calls("eth_getBlockByNumber")}
        assert self.unpayable() - before == 1

    def test_payments_over_the_bound_end_the_range_before_the_first_block_left_out(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Bound 2, two payments in block 103 and one in 105: the observation ends at 104, one warning line."""
        monkeypatch.setattr(observer, "MAX_PAYMENTS_PER_OBSERVATION", 2)
        logs = [make_transfer(103, n=1, log_index=0), make_transfer(103, n=2, log_index=1), make_transfer(105, n=3)]
        network = FakeNetwork({url: honest_provider(*logs) for url in (RPC_A, RPC_B, RPC_C)})
        before = self.truncated("payments")
        with caplog.at_level(logging.WARNING):
            observation, _ = self.observe(network)
        payments = tuple(Payment(t, 1_700_000_103) for t in logs[:2])
        assert observation == Observation(100, 104, payments, EXPECTED_INVOICES)
        assert {params[0] for _, params in network.rpc_calls("eth_getBlockByNumber")} == {hex(103)}
        (line,) = [r for r in caplog.records if r.getMessage().startswith("payments truncated")]
        assert (line.count, line.bound, line.block) == (3, 2, 105)  # type: ignore[attr-defined]
        assert self.truncated("payments") - before == 1

    def test_an_observation_over_the_size_bound_is_cut_by_whole_blocks(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Payments in blocks 103 and 105, room for the first only: the observation ends at 104 and fits."""
        expected = Observation(100, 104, (make_payment(103, n=1),), EXPECTED_INVOICES)
        monkeypatch.setattr(observer, "MAX_OBSERVATION_BYTES", len(expected.to_json()))
        logs = [make_transfer(103, n=1), make_transfer(105, n=2)]
        network = FakeNetwork({url: honest_provider(*logs) for url in (RPC_A, RPC_B, RPC_C)})
        before = self.truncated("payments")
        with caplog.at_level(logging.WARNING):
            observation, _ = self.observe(network)
        assert observation == expected
        (line,) = [r for r in caplog.records if r.getMessage().startswith("payments truncated")]
        assert (line.count, line.block) == (2, 105)  # type: ignore[attr-defined]
        assert self.truncated("payments") - before == 1

    def test_invoices_over_the_bound_keep_the_first_by_uuid(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Bound 2, three watched invoices listed in any order: the two smallest uuids are observed."""
        monkeypatch.setattr(observer, "MAX_OPEN_INVOICES", 2)
        listed = [make_invoice(uuid, 1000, payer=PAYER) for uuid in ("inv-c", "inv-a", "inv-b")]
        network = FakeNetwork({url: honest_provider() for url in (RPC_A, RPC_B, RPC_C)})
        network.invoices = [dict(i.to_json(), token=TOKEN, receiver=RECEIVER) for i in listed]
        before = self.truncated("invoices")
        with caplog.at_level(logging.WARNING):
            observation, _ = self.observe(network)
        assert [i.uuid for i in observation.invoices or ()] == ["inv-a", "inv-b"]
        (line,) = [r for r in caplog.records if r.getMessage().startswith("invoices truncated")]
        assert (line.count, line.bound) == (3, 2)  # type: ignore[attr-defined]
        assert self.truncated("invoices") - before == 1


class TestRpcParams:
    """The RPC reliability settings of skill.yaml: typed, validated at start-up, one line on error."""

    def test_defaults_build_a_policy(self) -> None:
        """skill.yaml's defaults: chunks of 1000 blocks, 3 attempts within 5 s, breaker 3 failures / 30 s."""
        params = Params(**params_kwargs())
        assert params.max_log_range == 1000 and params.rpc_max_lag_blocks == 10
        assert (params.rpc_retry.attempts, params.rpc_retry.budget_seconds) == (3, 5.0)
        assert (params.rpc_breaker_failures, params.rpc_breaker_cooldown_seconds) == (3, 30.0)

    @pytest.mark.parametrize(
        "arg, value, named",
        [
            ("max_log_range", 0, "max_log_range"),
            ("rpc_max_lag_blocks", -1, "rpc_max_lag_blocks"),
            ("rpc_retry_attempts", 0, "rpc retry or breaker settings"),
            ("rpc_breaker_failures", 0, "rpc retry or breaker settings"),
            ("rpc_breaker_cooldown_seconds", -1.0, "rpc retry or breaker settings"),
        ],
    )
    def test_nonsense_stops_start_up_with_one_line(self, arg: str, value: Any, named: str) -> None:
        """A value that could never work names itself."""
        with pytest.raises(InvalidSettings) as error:
            Params(**params_kwargs(**{arg: value}))
        message = str(error.value)
        assert message.startswith(f"invalid configuration: {named}: ") and "\n" not in message
