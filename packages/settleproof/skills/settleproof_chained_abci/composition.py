"""The chained FSM: registration_abci -> settlement_abci (from RecoverStateRound) -> reset_pause_abci
-> settlement_abci (from SelectKeeperRound) ..."""

from packages.settleproof.skills.settlement_abci.rounds import (
    FinishedSettlementRound,
    RecoverStateRound,
    SelectKeeperRound,
    SettlementAbciApp,
)
from packages.valory.skills.abstract_round_abci.abci_app_chain import (
    AbciAppTransitionMapping,
    chain,
)
from packages.valory.skills.registration_abci.rounds import (
    AgentRegistrationAbciApp,
    FinishedRegistrationRound,
    RegistrationRound,
)
from packages.valory.skills.reset_pause_abci.rounds import (
    FinishedResetAndPauseErrorRound,
    FinishedResetAndPauseRound,
    ResetAndPauseRound,
    ResetPauseAbciApp,
)


abci_app_transition_mapping: AbciAppTransitionMapping = {
    FinishedRegistrationRound: RecoverStateRound,
    FinishedSettlementRound: ResetAndPauseRound,
    FinishedResetAndPauseRound: SelectKeeperRound,
    FinishedResetAndPauseErrorRound: RegistrationRound,
}

SettleProofAbciApp = chain(
    (AgentRegistrationAbciApp, SettlementAbciApp, ResetPauseAbciApp),
    abci_app_transition_mapping,
)
