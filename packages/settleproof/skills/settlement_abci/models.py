"""Skill models: the operator's settings, validated once, the shared state of the FSM, and the
agent's own memory of its RPC providers."""

import sys
from typing import Any, Dict, Optional

from aea.skills.base import Model
from prometheus_client import CollectorRegistry

from packages.settleproof.skills.settlement_abci.breaker import Breakers
from packages.settleproof.skills.settlement_abci.config import (
    ConfigError,
    Settings,
    parse_settings,
)
from packages.settleproof.skills.settlement_abci.outbox import OutboxPolicy
from packages.settleproof.skills.settlement_abci.webhook_retry import Backoff
from packages.settleproof.skills.settlement_abci.retry_policy import RetryPolicy
from packages.settleproof.skills.settlement_abci.rounds import (
    CheckpointRound,
    DedupeRound,
    Event,
    RecoverStateRound,
    SettlementAbciApp,
)
from packages.settleproof.skills.settlement_abci.rpc_metrics import RpcMetrics
from packages.settleproof.skills.settlement_abci.settings_digest import settings_digests
from packages.settleproof.skills.settlement_abci.store import Store, StoreError, check_existing
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
        try:
            check_existing(self.settings.data_dir)
        except StoreError as error:
            raise InvalidSettings(f"refusing to start: {error}") from None
        self.processed_retention_blocks: int = self._ensure("processed_retention_blocks", kwargs, int)
        if self.processed_retention_blocks < 1:
            raise InvalidSettings(
                f"invalid configuration: processed_retention_blocks: {self.processed_retention_blocks} "
                "is below the minimum 1"
            )
        self.rpc_timeout_seconds: float = self._ensure("rpc_timeout_seconds", kwargs, float)
        self.webhook_timeout_seconds: float = self._ensure(
            "webhook_timeout_seconds", kwargs, float
        )
        self.webhook_concurrency: int = self._ensure("webhook_concurrency", kwargs, int)
        self._read_webhook_limits(kwargs)
        self._read_rpc_limits(kwargs)
        super().__init__(*args, **kwargs)

    @property
    def settings_digests(self) -> Dict[str, str]:
        """The digests of the settings that shape this agent's votes (`settings_digest`)."""
        return settings_digests(self.settings, self.outbox_policy, self.processed_retention_blocks)

    def _read_webhook_limits(self, kwargs: Dict[str, Any]) -> None:
        """Delivery bounds, give-up rules and backoff; a value below 1 stops start-up."""
        ints = {
            name: self._ensure(name, kwargs, int)
            for name in ("webhook_max_per_period", "webhook_client_error_attempts", "webhook_max_age_seconds")
        }
        floats = {
            name: self._ensure(name, kwargs, float)
            for name in ("webhook_backoff_base_seconds", "webhook_backoff_cap_seconds")
        }
        for name, value in {**ints, **floats, "webhook_concurrency": self.webhook_concurrency}.items():
            if value < 1:
                raise InvalidSettings(f"invalid configuration: {name}: {value} is below the minimum 1")
        self.webhook_max_per_period: int = ints["webhook_max_per_period"]
        self.outbox_policy = OutboxPolicy(
            max_attempts=self.settings.webhook_max_attempts,
            client_error_attempts=ints["webhook_client_error_attempts"],
            max_age_seconds=ints["webhook_max_age_seconds"],
        )
        self.backoff = Backoff(floats["webhook_backoff_base_seconds"], floats["webhook_backoff_cap_seconds"])

    def _read_rpc_limits(self, kwargs: Dict[str, Any]) -> None:
        """Chunking, lag bound, retry policy and breaker settings; a bad one stops start-up."""
        ints = {
            name: self._ensure(name, kwargs, int)
            for name in ("max_log_range", "rpc_max_lag_blocks", "rpc_retry_attempts", "rpc_breaker_failures")
        }
        floats = {
            name: self._ensure(name, kwargs, float)
            for name in (
                "rpc_retry_budget_seconds",
                "rpc_backoff_initial_seconds",
                "rpc_backoff_max_seconds",
                "rpc_breaker_cooldown_seconds",
            )
        }
        for name, minimum in (("max_log_range", 1), ("rpc_max_lag_blocks", 0)):
            if ints[name] < minimum:
                raise InvalidSettings(f"invalid configuration: {name}: {ints[name]} is below the minimum {minimum}")
        self.max_log_range: int = ints["max_log_range"]
        self.rpc_max_lag_blocks: int = ints["rpc_max_lag_blocks"]
        self.rpc_breaker_failures: int = ints["rpc_breaker_failures"]
        self.rpc_breaker_cooldown_seconds: float = floats["rpc_breaker_cooldown_seconds"]
        try:
            self.rpc_retry = RetryPolicy(
                attempts=ints["rpc_retry_attempts"],
                budget_seconds=floats["rpc_retry_budget_seconds"],
                initial_seconds=floats["rpc_backoff_initial_seconds"],
                max_wait_seconds=floats["rpc_backoff_max_seconds"],
                jitter_seconds=floats["rpc_backoff_initial_seconds"],  # jitter up to one initial wait
            )
            Breakers(self.rpc_breaker_failures, self.rpc_breaker_cooldown_seconds)
        except ValueError as error:
            raise InvalidSettings(f"invalid configuration: rpc retry or breaker settings: {error}") from None


class SharedState(BaseSharedState):
    """The FSM's shared state; round timeouts follow the configured round timeout."""

    abci_app_cls = SettlementAbciApp

    def setup(self) -> None:
        """Apply the configured timeouts and the rounds' settings to the FSM."""
        super().setup()
        params = self.context.params
        SettlementAbciApp.event_to_timeout[Event.ROUND_TIMEOUT] = params.round_timeout_seconds
        SettlementAbciApp.event_to_timeout[Event.KEEPER_TIMEOUT] = (
            params.round_timeout_seconds
        )
        configure_rounds(params)


#: py_ecc (imported with the framework's Ethereum packages) raises Python's recursion limit to
#: 100,000. At that limit `json.loads` of a deeply nested text overflows the C stack and the process
#: dies of SIGSEGV instead of raising RecursionError, and the framework decodes every incoming
#: transaction with `json.loads` at CheckTx: one nested transaction from anyone who reaches a node
#: would kill every agent. At 10,000 it raises, which the ABCI connection answers as a failed CheckTx.
SAFE_RECURSION_LIMIT = 10_000


def bound_recursion() -> None:
    """Lower the recursion limit to `SAFE_RECURSION_LIMIT` if something raised it."""
    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT:
        sys.setrecursionlimit(SAFE_RECURSION_LIMIT)


def configure_rounds(params: Params) -> None:
    """Hand the rounds the settings they apply to agreed data (rounds cannot read params), and bound
    the recursion limit (see `SAFE_RECURSION_LIMIT`) before any transaction is decoded.

    Every skill that runs these rounds (this one, the chained one) calls it from its shared state's setup.
    """
    bound_recursion()
    CheckpointRound.policy = params.outbox_policy
    CheckpointRound.retention_blocks = params.processed_retention_blocks
    RecoverStateRound.retention_blocks = params.processed_retention_blocks
    DedupeRound.confirmations = params.settings.confirmations


class RpcHealth(Model):
    """What this agent learnt about its RPC providers, kept across periods in its own memory.

    Breakers and metrics are local on purpose: each agent judges the providers
    it talks to, and nothing here goes through consensus. The metrics go into
    the skill's shared registry (the `metrics` model) when the skill has one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Breakers and metrics are made on first use, once every model exists."""
        super().__init__(*args, **kwargs)
        self._metrics: Optional[RpcMetrics] = None
        self._breakers: Optional[Breakers] = None

    @property
    def metrics(self) -> RpcMetrics:
        """The RPC metrics, registered in the skill's registry (or a registry of their own)."""
        if self._metrics is None:
            shared = getattr(getattr(self.context, "metrics", None), "registry", None)
            registry = shared if isinstance(shared, CollectorRegistry) else CollectorRegistry()
            self._metrics = RpcMetrics(registry)
        return self._metrics

    def breakers(self, failure_threshold: int, cooldown_seconds: float) -> Breakers:
        """The providers' breakers (settings apply on first call; they are fixed for a run)."""
        if self._breakers is None:
            self._breakers = Breakers(failure_threshold, cooldown_seconds)
        return self._breakers

    def reset(self) -> None:
        """Forget every provider's history (tests; an agent keeps it for its whole run)."""
        if self._metrics is not None:
            self._metrics.unregister()
        self._metrics = self._breakers = None


class DurableStore(Model):
    """This agent's SQLite store (`store.Store`), opened on first use and closed at teardown.

    Opened lazily, so loading the skill (tests, `autonomy analyse`) creates no file.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Nothing is opened yet."""
        super().__init__(*args, **kwargs)
        self._store: Optional[Store] = None

    @property
    def store(self) -> Store:
        """The store in `SETTLEPROOF_DATA_DIR` (default `./data`); raises `store.StoreError`."""
        if self._store is None:
            self._store = Store.open(self.context.params.settings.data_dir)
        return self._store

    def teardown(self) -> None:
        """Close the file."""
        if self._store is not None:
            self._store.close()
            self._store = None
