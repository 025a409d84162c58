"""Tests of the settlement skill's models: Params validation and SharedState set-up."""

# pylint: disable=protected-access

from pathlib import Path
from typing import Any, Dict, Iterator
from unittest.mock import MagicMock

import pytest
import yaml

from packages.settleproof.skills.settlement_abci.metrics import Metrics
from packages.settleproof.skills.settlement_abci.models import (
    SETTING_ARGS,
    BenchmarkTool,
    DurableStore,
    InvalidSettings,
    Params,
    Requests,
    SharedState,
)
from packages.settleproof.skills.settlement_abci.outbox import OutboxPolicy
from packages.settleproof.skills.settlement_abci.webhook_retry import Backoff
from packages.settleproof.skills.settlement_abci.rounds import (
    CheckpointRound,
    DedupeRound,
    Event,
    RecoverStateRound,
    SettlementAbciApp,
)
from packages.valory.skills.abstract_round_abci.models import (
    BaseParams,
)
from packages.valory.skills.abstract_round_abci.models import (
    BenchmarkTool as BaseBenchmarkTool,
)
from packages.valory.skills.abstract_round_abci.models import Requests as BaseRequests
from packages.valory.skills.abstract_round_abci.test_tools.base import DummyContext


SKILL_YAML = Path(__file__).parents[1] / "skill.yaml"
TOKEN = "0x" + "a1" * 20
SECRET = "whsec_dGVzdC1vbmx5LW5vdC1hLXJlYWwtc2VjcmV0"  # base64 of "test-only-not-a-real-secret"
VALID = {
    "rpc_endpoints": "http://rpc-a.test, https://rpc-b.test",
    "rpc_quorum": "2",
    "token_address": f"{TOKEN},0x{'B2' * 20}",
    "invoices_url": "https://merchant.test/invoices?status=open",
    "webhook_url": "https://merchant.test/webhook",
    "webhook_secret": SECRET,
    "webhook_secret_next": "",
    "webhook_max_attempts": "7",
    "confirmations": "3",
    "start_block": "",
    "max_blocks_per_period": "500",
    "data_dir": "",
}


def params_kwargs(**settings: Any) -> Dict[str, Any]:
    """The params args of skill.yaml with valid settings (overridden by `settings`)."""
    args = yaml.safe_load(SKILL_YAML.read_text())["models"]["params"]["args"]
    return {
        **args,
        **VALID,
        **settings,
        "name": "params",
        "skill_context": MagicMock(is_abstract_component=True),
    }


def test_aliases() -> None:
    """Requests and BenchmarkTool are the framework's."""
    assert Requests is BaseRequests
    assert BenchmarkTool is BaseBenchmarkTool
    assert issubclass(Params, BaseParams)


def test_every_setting_maps_to_its_variable() -> None:
    """Each SETTLEPROOF_* variable of the README has its params arg."""
    assert set(SETTING_ARGS.values()) == {
        "SETTLEPROOF_RPC_ENDPOINTS", "SETTLEPROOF_RPC_QUORUM", "SETTLEPROOF_TOKEN_ADDRESS",
        "SETTLEPROOF_INVOICES_URL", "SETTLEPROOF_WEBHOOK_URL", "SETTLEPROOF_WEBHOOK_SECRET",
        "SETTLEPROOF_WEBHOOK_SECRET_NEXT", "SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS",
        "SETTLEPROOF_CONFIRMATIONS", "SETTLEPROOF_START_BLOCK",
        "SETTLEPROOF_MAX_BLOCKS_PER_PERIOD", "SETTLEPROOF_DATA_DIR",
    }
    args = yaml.safe_load(SKILL_YAML.read_text())["models"]["params"]["args"]
    assert set(SETTING_ARGS) <= set(args), "skill.yaml must declare every setting arg"


class TestParams:
    """Params parses the settings once, with the framework's own parameters."""

    def test_valid_settings(self) -> None:
        """Valid strings become typed settings; the request limits are read too."""
        params = Params(**params_kwargs())
        settings = params.settings
        assert settings.rpc_endpoints == ("http://rpc-a.test", "https://rpc-b.test")
        assert settings.rpc_quorum == 2
        assert settings.token_addresses == (TOKEN, "0x" + "b2" * 20)
        assert settings.invoices_url == "https://merchant.test/invoices?status=open"
        assert settings.webhook_secrets == (SECRET,)
        assert settings.webhook_max_attempts == 7
        assert settings.confirmations == 3
        assert settings.start_block is None
        assert settings.max_blocks_per_period == 500
        assert isinstance(params.rpc_timeout_seconds, float)
        assert isinstance(params.webhook_timeout_seconds, float)
        assert isinstance(params.webhook_concurrency, int) and params.webhook_concurrency > 0
        assert params.round_timeout_seconds > 0

    def test_webhook_limits(self) -> None:
        """Delivery bounds and give-up rules come from skill.yaml; the attempt limit from the environment."""
        params = Params(**params_kwargs())
        assert params.webhook_max_per_period == 1000
        assert params.outbox_policy == OutboxPolicy(max_attempts=7, client_error_attempts=3, max_age_seconds=72 * 3600)
        assert params.backoff == Backoff(30.0, 12 * 3600.0)

    @pytest.mark.parametrize(
        "arg", ["webhook_max_per_period", "webhook_client_error_attempts", "webhook_max_age_seconds", "webhook_concurrency"]
    )
    def test_webhook_limit_below_one_stops_start_up(self, arg: str) -> None:
        """A zero limit would silently stop delivery: refuse it with one line naming it."""
        with pytest.raises(InvalidSettings, match=f"^invalid configuration: {arg}: 0 is below the minimum 1$"):
            Params(**params_kwargs(**{arg: 0}))

    def test_defaults_apply_when_unset(self) -> None:
        """Optional settings left empty take the documented defaults."""
        params = Params(
            **params_kwargs(rpc_quorum="", webhook_max_attempts="", confirmations="", start_block="unset")
        )
        assert params.settings.rpc_quorum == 2
        assert params.settings.webhook_max_attempts == 10
        assert params.settings.confirmations == 12
        assert params.settings.start_block is None

    def test_rotation_and_start_block(self) -> None:
        """A second secret signs too; a start block is an int."""
        next_secret = "whsec_dGVzdC1vbmx5LXJvdGF0ZWQtc2VjcmV0ISE="
        params = Params(**params_kwargs(webhook_secret_next=next_secret, start_block="1234"))
        assert params.settings.webhook_secrets == (SECRET, next_secret)
        assert params.settings.start_block == 1234

    @pytest.mark.parametrize(
        "arg, value, variable",
        [
            ("rpc_endpoints", "", "SETTLEPROOF_RPC_ENDPOINTS"),
            ("rpc_endpoints", "ftp://rpc.test", "SETTLEPROOF_RPC_ENDPOINTS"),
            ("rpc_endpoints", "http://a.test,http://a.test", "SETTLEPROOF_RPC_ENDPOINTS"),
            ("rpc_quorum", "3", "SETTLEPROOF_RPC_QUORUM"),
            ("rpc_quorum", "two", "SETTLEPROOF_RPC_QUORUM"),
            ("token_address", "0x1234", "SETTLEPROOF_TOKEN_ADDRESS"),
            ("invoices_url", "merchant.test/invoices", "SETTLEPROOF_INVOICES_URL"),
            ("webhook_url", "", "SETTLEPROOF_WEBHOOK_URL"),
            ("webhook_secret", "not-a-secret", "SETTLEPROOF_WEBHOOK_SECRET"),
            ("webhook_secret", "whsec_c2hvcnQ=", "SETTLEPROOF_WEBHOOK_SECRET"),
            ("webhook_secret_next", "whsec_***", "SETTLEPROOF_WEBHOOK_SECRET_NEXT"),
            ("webhook_max_attempts", "0", "SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS"),
            ("confirmations", "-1", "SETTLEPROOF_CONFIRMATIONS"),
            ("start_block", "latest", "SETTLEPROOF_START_BLOCK"),
            ("max_blocks_per_period", "0", "SETTLEPROOF_MAX_BLOCKS_PER_PERIOD"),
        ],
    )
    def test_invalid_setting_is_one_line_naming_the_variable(self, arg: str, value: str, variable: str) -> None:
        """An invalid value stops start-up with one line naming the variable and the problem."""
        with pytest.raises(InvalidSettings) as error:
            Params(**params_kwargs(**{arg: value}))
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith(f"invalid configuration: {variable}: ")
        assert len(message) > len(f"invalid configuration: {variable}: ")  # the problem is said too

    def test_secret_is_not_echoed(self) -> None:
        """A malformed secret is reported without repeating it."""
        with pytest.raises(InvalidSettings) as error:
            Params(**params_kwargs(webhook_secret="whsec_!!top-secret-value!!"))
        assert "top-secret-value" not in str(error.value)


@pytest.fixture
def fsm_class_state() -> Iterator[None]:
    """SharedState.setup writes class attributes of the FSM: restore them afterwards."""
    timeouts = dict(SettlementAbciApp.event_to_timeout)
    saved = (CheckpointRound.policy, CheckpointRound.retention_blocks, RecoverStateRound.retention_blocks,
             DedupeRound.confirmations)
    yield
    SettlementAbciApp.event_to_timeout.clear()
    SettlementAbciApp.event_to_timeout.update(timeouts)
    (CheckpointRound.policy, CheckpointRound.retention_blocks, RecoverStateRound.retention_blocks,
     DedupeRound.confirmations) = saved


class TestSharedState:
    """SharedState runs the settlement app with the configured timeouts."""

    def test_initialization(self) -> None:
        """As in the framework's own tests."""
        state = SharedState(name="", skill_context=DummyContext())
        assert state.abci_app_cls is SettlementAbciApp

    @pytest.mark.usefixtures("fsm_class_state")
    def test_setup_sets_timeouts_and_attempts(self) -> None:
        """round_timeout_seconds becomes both timeouts; the webhook policy the checkpoint's rules."""
        context = MagicMock(is_abstract_component=True)
        context.params.round_timeout_seconds = 7.5
        context.params.outbox_policy = OutboxPolicy(max_attempts=4, client_error_attempts=2)
        context.params.processed_retention_blocks = 321
        context.params.settings.confirmations = 5
        context.params.setup_params = {
            "all_participants": ["0x0"],
            "safe_contract_address": "0x0",
            "consensus_threshold": None,
        }
        state = SharedState(name="state", skill_context=context)
        state.setup()
        assert SettlementAbciApp.event_to_timeout[Event.ROUND_TIMEOUT] == 7.5
        assert SettlementAbciApp.event_to_timeout[Event.KEEPER_TIMEOUT] == 7.5
        assert CheckpointRound.policy == OutboxPolicy(max_attempts=4, client_error_attempts=2)
        assert (CheckpointRound.retention_blocks, RecoverStateRound.retention_blocks) == (321, 321)
        assert DedupeRound.confirmations == 5
        assert isinstance(state.round_sequence.abci_app, SettlementAbciApp)


@pytest.mark.parametrize("content", [b"", b"garbage" * 500])
def test_a_damaged_store_stops_start_up_with_one_line(tmp_path: Path, content: bytes) -> None:
    """An empty or garbage store file in SETTLEPROOF_DATA_DIR: one line naming the file and what to do."""
    (tmp_path / "settleproof.sqlite3").write_bytes(content)
    with pytest.raises(InvalidSettings) as error:
        Params(**params_kwargs(data_dir=str(tmp_path)))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"refusing to start: {tmp_path / 'settleproof.sqlite3'}: ")
    assert message.endswith("move it aside to start from the agreed state")
    assert (tmp_path / "settleproof.sqlite3").read_bytes() == content  # left as it was


def test_a_missing_store_is_fine_and_not_created(tmp_path: Path) -> None:
    """Params only checks an existing store; a first start creates nothing at load time."""
    params = Params(**params_kwargs(data_dir=str(tmp_path / "data")))
    assert params.processed_retention_blocks == 2000
    assert not (tmp_path / "data").exists()


def test_retention_below_one_stops_start_up() -> None:
    """A retention window of 0 blocks would forget keys a re-scan needs."""
    with pytest.raises(InvalidSettings, match="processed_retention_blocks: 0 is below the minimum 1"):
        Params(**params_kwargs(processed_retention_blocks=0))


def test_durable_store_opens_on_first_use_in_the_data_dir(tmp_path: Path) -> None:
    """Loading the skill creates no file; the first use opens the store in SETTLEPROOF_DATA_DIR."""
    context = MagicMock(is_abstract_component=True)
    context.params.settings.data_dir = str(tmp_path / "data")
    model = DurableStore(name="durable_store", skill_context=context)
    assert not (tmp_path / "data").exists()
    store = model.store
    assert model.store is store and store.path == tmp_path / "data" / "settleproof.sqlite3"
    model.teardown()
    model.teardown()  # idempotent
    assert store.path.is_file()


def test_metrics_have_a_registry_per_skill() -> None:
    """Two skill instances never share counters."""
    first = Metrics(name="metrics", skill_context=MagicMock(is_abstract_component=True))
    second = Metrics(name="metrics", skill_context=MagicMock(is_abstract_component=True))
    first.webhooks.deliveries.labels("delivered").inc()
    assert first.webhooks.value("webhook_deliveries_total", outcome="delivered") == 1
    assert second.webhooks.value("webhook_deliveries_total", outcome="delivered") == 0
