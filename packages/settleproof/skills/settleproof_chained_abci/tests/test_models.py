"""Tests of the chained skill's models."""

from typing import Iterator
from unittest.mock import MagicMock

import pytest

from packages.settleproof.skills.settlement_abci.models import Params as SettlementParams
from packages.settleproof.skills.settlement_abci.outbox import OutboxPolicy
from packages.settleproof.skills.settlement_abci.rounds import CheckpointRound, DedupeRound
from packages.settleproof.skills.settlement_abci.rounds import Event as SettlementEvent
from packages.settleproof.skills.settleproof_chained_abci.composition import (
    SettleProofAbciApp,
)
from packages.settleproof.skills.settleproof_chained_abci.models import (
    MARGIN,
    BenchmarkTool,
    Params,
    Requests,
    SharedState,
)
from packages.valory.skills.abstract_round_abci.models import (
    BenchmarkTool as BaseBenchmarkTool,
)
from packages.valory.skills.abstract_round_abci.models import Requests as BaseRequests
from packages.valory.skills.abstract_round_abci.test_tools.base import DummyContext
from packages.valory.skills.reset_pause_abci.rounds import Event as ResetPauseEvent


def test_aliases() -> None:
    """The chained skill uses the settlement params and the framework's models."""
    assert Params is SettlementParams
    assert Requests is BaseRequests
    assert BenchmarkTool is BaseBenchmarkTool


@pytest.fixture
def fsm_class_state() -> Iterator[None]:
    """SharedState.setup writes class attributes: restore them afterwards."""
    timeouts = dict(SettleProofAbciApp.event_to_timeout)
    policy, retention, confirmations = (
        CheckpointRound.policy, CheckpointRound.retention_blocks, DedupeRound.confirmations
    )
    yield
    SettleProofAbciApp.event_to_timeout.clear()
    SettleProofAbciApp.event_to_timeout.update(timeouts)
    CheckpointRound.policy, CheckpointRound.retention_blocks, DedupeRound.confirmations = (
        policy, retention, confirmations
    )


class TestSharedState:
    """SharedState of the chained app."""

    def test_initialization(self) -> None:
        """As in the framework's own tests."""
        state = SharedState(name="", skill_context=DummyContext())
        assert state.abci_app_cls is SettleProofAbciApp

    @pytest.mark.usefixtures("fsm_class_state")
    def test_setup_sets_timeouts_and_attempts(self) -> None:
        """Round and keeper timeouts follow round_timeout_seconds; the reset timeout covers the pause."""
        context = MagicMock(is_abstract_component=True)
        context.params.round_timeout_seconds = 12.0
        context.params.reset_pause_duration = 20
        context.params.outbox_policy = OutboxPolicy(max_attempts=6, client_error_attempts=2)
        context.params.processed_retention_blocks = 777
        context.params.settings.confirmations = 3
        context.params.setup_params = {
            "all_participants": ["0x0"],
            "safe_contract_address": "0x0",
            "consensus_threshold": None,
        }
        state = SharedState(name="state", skill_context=context)
        state.setup()
        timeouts = SettleProofAbciApp.event_to_timeout
        assert timeouts[SettlementEvent.ROUND_TIMEOUT] == 12.0
        assert timeouts[SettlementEvent.KEEPER_TIMEOUT] == 12.0
        assert timeouts[ResetPauseEvent.RESET_AND_PAUSE_TIMEOUT] == 20 + MARGIN
        assert MARGIN > 0
        assert CheckpointRound.policy == OutboxPolicy(max_attempts=6, client_error_attempts=2)
        assert (CheckpointRound.retention_blocks, DedupeRound.confirmations) == (777, 3)
        assert isinstance(state.round_sequence.abci_app, SettleProofAbciApp)
