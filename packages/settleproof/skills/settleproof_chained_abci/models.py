"""Models of the chained skill: the settlement parameters and the chained app's shared state."""

from packages.settleproof.skills.settlement_abci.metrics import (
    Metrics as SettlementMetrics,
)
from packages.settleproof.skills.settlement_abci.models import (
    DurableStore as SettlementDurableStore,
)
from packages.settleproof.skills.settlement_abci.models import Params as SettlementParams
from packages.settleproof.skills.settlement_abci.models import configure_rounds
from packages.settleproof.skills.settlement_abci.models import (
    RpcHealth as SettlementRpcHealth,
)
from packages.settleproof.skills.settlement_abci.rounds import Event as SettlementEvent
from packages.settleproof.skills.settleproof_chained_abci.composition import (
    SettleProofAbciApp,
)
from packages.valory.skills.abstract_round_abci.models import (
    BenchmarkTool as BaseBenchmarkTool,
)
from packages.valory.skills.abstract_round_abci.models import Requests as BaseRequests
from packages.valory.skills.abstract_round_abci.models import (
    SharedState as BaseSharedState,
)
from packages.valory.skills.reset_pause_abci.rounds import Event as ResetPauseEvent


# Seconds added to the pause so the reset round never times out while the pause is running.
MARGIN = 5

Requests = BaseRequests
BenchmarkTool = BaseBenchmarkTool
Params = SettlementParams
Metrics = SettlementMetrics
DurableStore = SettlementDurableStore
RpcHealth = SettlementRpcHealth


class SharedState(BaseSharedState):
    """Shared state of the chained app; timeouts follow the configured parameters."""

    abci_app_cls = SettleProofAbciApp

    def setup(self) -> None:
        """Apply the configured timeouts and the settlement rounds' settings to the chained FSM."""
        super().setup()
        params = self.context.params
        timeouts = SettleProofAbciApp.event_to_timeout
        timeouts[SettlementEvent.ROUND_TIMEOUT] = params.round_timeout_seconds
        timeouts[SettlementEvent.KEEPER_TIMEOUT] = params.round_timeout_seconds
        timeouts[ResetPauseEvent.RESET_AND_PAUSE_TIMEOUT] = (
            params.reset_pause_duration + MARGIN
        )
        configure_rounds(params)
