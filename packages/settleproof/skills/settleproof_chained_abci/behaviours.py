"""The chained skill's round behaviour: the union of the chained skills' behaviours."""

from typing import Set, Type

from packages.settleproof.skills.settlement_abci.behaviours import (
    SettlementRoundBehaviour,
)
from packages.settleproof.skills.settleproof_chained_abci.composition import (
    SettleProofAbciApp,
)
from packages.valory.skills.abstract_round_abci.behaviours import (
    AbstractRoundBehaviour,
    BaseBehaviour,
)
from packages.valory.skills.registration_abci.behaviours import (
    AgentRegistrationRoundBehaviour,
    RegistrationStartupBehaviour,
)
from packages.valory.skills.reset_pause_abci.behaviours import (
    ResetPauseABCIConsensusBehaviour,
)


class SettleProofConsensusBehaviour(AbstractRoundBehaviour):
    """Runs registration once, then settlement and reset-and-pause in turn."""

    initial_behaviour_cls = RegistrationStartupBehaviour
    abci_app_cls = SettleProofAbciApp
    behaviours: Set[Type[BaseBehaviour]] = {
        *AgentRegistrationRoundBehaviour.behaviours,
        *SettlementRoundBehaviour.behaviours,
        *ResetPauseABCIConsensusBehaviour.behaviours,
    }
