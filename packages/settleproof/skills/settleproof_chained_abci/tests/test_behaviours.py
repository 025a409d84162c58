"""Tests of the chained skill's round behaviour, as Valory tests its chained skills."""

from pathlib import Path
from unittest.mock import MagicMock

from packages.settleproof.skills.settlement_abci.behaviours import (
    SettlementRoundBehaviour,
)
from packages.settleproof.skills.settleproof_chained_abci import PUBLIC_ID
from packages.settleproof.skills.settleproof_chained_abci.behaviours import (
    SettleProofConsensusBehaviour,
)
from packages.settleproof.skills.settleproof_chained_abci.composition import (
    SettleProofAbciApp,
)
from packages.valory.skills.registration_abci.behaviours import (
    AgentRegistrationRoundBehaviour,
    RegistrationStartupBehaviour,
)
from packages.valory.skills.reset_pause_abci.behaviours import (
    ResetPauseABCIConsensusBehaviour,
)


def test_public_id() -> None:
    """The skill's public id matches its folder and author."""
    assert PUBLIC_ID.name == Path(__file__).parents[1].name
    assert PUBLIC_ID.author == Path(__file__).parents[3].name


def test_chained_behaviour() -> None:
    """Registration first; the union of the three skills' behaviours."""
    behaviour = SettleProofConsensusBehaviour(name="dummy_name", skill_context=MagicMock())
    assert behaviour.initial_behaviour_cls == RegistrationStartupBehaviour
    assert behaviour.abci_app_cls == SettleProofAbciApp
    assert behaviour.behaviours == {
        *AgentRegistrationRoundBehaviour.behaviours,
        *SettlementRoundBehaviour.behaviours,
        *ResetPauseABCIConsensusBehaviour.behaviours,
    }


def test_every_round_has_a_behaviour() -> None:
    """Each round of the chain is matched by exactly one behaviour."""
    matched = [b.matching_round for b in SettleProofConsensusBehaviour.behaviours]
    assert len(matched) == len(set(matched))
    assert set(matched) == set(SettleProofAbciApp.get_all_rounds())
