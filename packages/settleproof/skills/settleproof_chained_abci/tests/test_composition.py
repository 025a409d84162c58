"""Tests of the chained FSM: registration -> settlement -> reset-and-pause -> settlement ..."""

from typing import Any

import pytest

from packages.settleproof.skills.settlement_abci.rounds import (
    CheckpointRound,
    DedupeRound,
    DeliverWebhookRound,
)
from packages.settleproof.skills.settlement_abci.rounds import Event as SettlementEvent
from packages.settleproof.skills.settlement_abci.rounds import (
    FetchLogsQuorumRound,
    FinishedSettlementRound,
    KeeperFailoverRound,
    RecoverStateRound,
    SelectKeeperRound,
    SettlementAbciApp,
)
from packages.settleproof.skills.settleproof_chained_abci.composition import (
    SettleProofAbciApp,
    abci_app_transition_mapping,
)
from packages.valory.skills.abstract_round_abci.base import AbciAppDB, BaseSynchronizedData
from packages.valory.skills.registration_abci.rounds import (
    AgentRegistrationAbciApp,
)
from packages.valory.skills.registration_abci.rounds import Event as RegistrationEvent
from packages.valory.skills.registration_abci.rounds import (
    FinishedRegistrationRound,
    RegistrationRound,
    RegistrationStartupRound,
)
from packages.valory.skills.reset_pause_abci.rounds import Event as ResetPauseEvent
from packages.valory.skills.reset_pause_abci.rounds import (
    FinishedResetAndPauseErrorRound,
    FinishedResetAndPauseRound,
    ResetAndPauseRound,
    ResetPauseAbciApp,
)


def test_transition_mapping() -> None:
    """Every final round of a chained app leads to the documented next app's round."""
    assert abci_app_transition_mapping == {
        FinishedRegistrationRound: RecoverStateRound,
        FinishedSettlementRound: ResetAndPauseRound,
        FinishedResetAndPauseRound: SelectKeeperRound,
        FinishedResetAndPauseErrorRound: RegistrationRound,
    }


@pytest.mark.parametrize(
    "round_cls, event, next_round",
    [
        (RegistrationStartupRound, RegistrationEvent.DONE, RecoverStateRound),
        (RegistrationRound, RegistrationEvent.DONE, RecoverStateRound),
        (RecoverStateRound, SettlementEvent.DONE, SelectKeeperRound),
        (SelectKeeperRound, SettlementEvent.DONE, FetchLogsQuorumRound),
        (DedupeRound, SettlementEvent.NOTHING_TO_DELIVER, CheckpointRound),
        (DeliverWebhookRound, SettlementEvent.KEEPER_TIMEOUT, KeeperFailoverRound),
        (KeeperFailoverRound, SettlementEvent.ALL_KEEPERS_FAILED, CheckpointRound),
        (CheckpointRound, SettlementEvent.DONE, ResetAndPauseRound),
        (CheckpointRound, SettlementEvent.NO_MAJORITY, FetchLogsQuorumRound),
        (ResetAndPauseRound, ResetPauseEvent.DONE, SelectKeeperRound),
        (ResetAndPauseRound, ResetPauseEvent.NO_MAJORITY, RegistrationRound),
        (ResetAndPauseRound, ResetPauseEvent.RESET_AND_PAUSE_TIMEOUT, RegistrationRound),
    ],
)
def test_chained_transitions(round_cls: Any, event: Any, next_round: Any) -> None:
    """Registration once, then settlement and reset-and-pause in turn; errors go back to registration."""
    assert SettleProofAbciApp.transition_function[round_cls][event] is next_round


def test_chain_has_no_final_state_and_starts_with_registration() -> None:
    """The agent runs forever, starting from registration."""
    assert SettleProofAbciApp.final_states == set()
    assert SettleProofAbciApp.initial_round_cls is RegistrationStartupRound
    assert SettleProofAbciApp.initial_states == {RegistrationStartupRound, RegistrationRound}
    rounds = set(SettleProofAbciApp.transition_function)
    for app in (AgentRegistrationAbciApp, SettlementAbciApp, ResetPauseAbciApp):
        assert set(app.transition_function) - app.final_states <= rounds
    assert not {FinishedRegistrationRound, FinishedSettlementRound, FinishedResetAndPauseRound} & rounds


def test_every_settlement_round_is_chained_unchanged() -> None:
    """Inside the chain the settlement rounds keep their transitions, except the exit to reset-and-pause."""
    for round_cls, transitions in SettlementAbciApp.transition_function.items():
        if round_cls is FinishedSettlementRound:
            continue
        for event, next_round in transitions.items():
            expected = abci_app_transition_mapping.get(next_round, next_round)
            assert SettleProofAbciApp.transition_function[round_cls][event] is expected


def test_timeouts_and_persisted_keys() -> None:
    """The chain keeps the settlement timeouts and the reset-and-pause timeout, and the persisted state."""
    assert {SettlementEvent.ROUND_TIMEOUT, SettlementEvent.KEEPER_TIMEOUT, ResetPauseEvent.RESET_AND_PAUSE_TIMEOUT} <= set(
        SettleProofAbciApp.event_to_timeout
    )
    assert SettlementAbciApp.cross_period_persisted_keys <= SettleProofAbciApp.cross_period_persisted_keys


def test_checkpoint_survives_reset_and_pause() -> None:
    """ResetAndPause starts a new period (db.create): the settlement state carries over."""
    db = AbciAppDB(
        setup_data=AbciAppDB.data_to_lists(
            {
                "participants": ("a", "b"),
                "all_participants": ("a", "b"),
                "consensus_threshold": 2,
                "safe_contract_address": "0x0",
            }
        ),
        cross_period_persisted_keys=SettleProofAbciApp.cross_period_persisted_keys,
    )
    db.update(
        checkpoint=7, checkpoint_hash="0xab", commit_seq=3, commit_parent="", processed_keys='{"k:0x1":5}', outbox='[{"x":1}]',
        dead_letters="[]", dead_letter_summary='{"count":0,"digest":""}', settings_digest="",
        agreement="{}",
    )
    data = BaseSynchronizedData(db).create()
    assert data.period_count == 1
    keys = ("checkpoint", "checkpoint_hash", "commit_seq", "processed_keys", "outbox", "dead_letters")
    assert [data.db.get(k) for k in keys] == [7, "0xab", 3, '{"k:0x1":5}', '[{"x":1}]', "[]"]
    assert data.db.get("agreement", None) is None
