"""Skill models: the operator's settings, validated once, and the shared state of the FSM."""

from typing import Any

from packages.settleproof.skills.settlement_abci.config import (
    ConfigError,
    Settings,
    parse_settings,
)
from packages.settleproof.skills.settlement_abci.rounds import (
    CheckpointRound,
    Event,
    SettlementAbciApp,
)
from packages.valory.skills.abstract_round_abci.models import BaseParams
from packages.valory.skills.abstract_round_abci.models import (
    BenchmarkTool as BaseBenchmarkTool,
)
from packages.valory.skills.abstract_round_abci.models import Requests as BaseRequests
from packages.valory.skills.abstract_round_abci.models import (
    SharedState as BaseSharedState,
)


Requests = BaseRequests
BenchmarkTool = BaseBenchmarkTool

#: skill.yaml argument -> the environment variable the agent's yaml maps onto it.
SETTING_ARGS = {
    "rpc_endpoints": "SETTLEPROOF_RPC_ENDPOINTS",
    "rpc_quorum": "SETTLEPROOF_RPC_QUORUM",
    "token_address": "SETTLEPROOF_TOKEN_ADDRESS",
    "invoices_url": "SETTLEPROOF_INVOICES_URL",
    "webhook_url": "SETTLEPROOF_WEBHOOK_URL",
    "webhook_secret": "SETTLEPROOF_WEBHOOK_SECRET",
    "webhook_secret_next": "SETTLEPROOF_WEBHOOK_SECRET_NEXT",
    "webhook_max_attempts": "SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS",
    "confirmations": "SETTLEPROOF_CONFIRMATIONS",
    "start_block": "SETTLEPROOF_START_BLOCK",
    "max_blocks_per_period": "SETTLEPROOF_MAX_BLOCKS_PER_PERIOD",
    "data_dir": "SETTLEPROOF_DATA_DIR",
}


class InvalidSettings(SystemExit):
    """Stops start-up with one line naming the variable and the problem.

    A `SystemExit`, so the framework's package loader does not wrap it in a traceback.
    """

    def __str__(self) -> str:
        """The one line the operator sees."""
        return str(self.code)


class Params(BaseParams):
    """The framework's parameters plus SettleProof's settings and request limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Read and validate the settings before the framework reads its own."""
        raw = {variable: kwargs.pop(arg, None) for arg, variable in SETTING_ARGS.items()}
        try:
            self.settings: Settings = parse_settings(
                {k: None if v is None else str(v) for k, v in raw.items()}
            )
        except ConfigError as error:
            raise InvalidSettings(f"invalid configuration: {error}") from None
        self.rpc_timeout_seconds: float = self._ensure("rpc_timeout_seconds", kwargs, float)
        self.webhook_timeout_seconds: float = self._ensure(
            "webhook_timeout_seconds", kwargs, float
        )
        self.webhook_concurrency: int = self._ensure("webhook_concurrency", kwargs, int)
        super().__init__(*args, **kwargs)


class SharedState(BaseSharedState):
    """The FSM's shared state; round timeouts follow the configured round timeout."""

    abci_app_cls = SettlementAbciApp

    def setup(self) -> None:
        """Apply the configured timeouts and attempt limit to the FSM."""
        super().setup()
        params = self.context.params
        SettlementAbciApp.event_to_timeout[Event.ROUND_TIMEOUT] = params.round_timeout_seconds
        SettlementAbciApp.event_to_timeout[Event.KEEPER_TIMEOUT] = (
            params.round_timeout_seconds
        )
        CheckpointRound.max_attempts = params.settings.webhook_max_attempts
