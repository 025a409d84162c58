"""One set of consensus settings: an agent whose vote-shaping settings differ stops, naming them.

Four real agents on four real Tendermint validators; agent 2's operator set
SETTLEPROOF_CONFIRMATIONS to 5 where the others run 2. At RecoverState the
agents agree on the settings digests three of them report; agent 2 sees its own
differ in the `chain` class and stops with one line instead of voting apart,
and the other three settle a payment.
"""

from __future__ import annotations

from typing import Any, Callable, List

import pytest
from web3 import Web3

from settleproof.agent_logs import parse
from settleproof.devnet.network import Devnet
from settleproof.merchant import MerchantServer
from settleproof.service_env import settleproof_env
from tests.devnet_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    devnet_factory,
    devnet_templates,
)
from tests.test_e2e_bft import FAST, TIMEOUT, Payments


pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_an_agent_with_other_settings_stops_naming_them(
    devnet_factory: Callable[..., Devnet],  # noqa: F811
    w3: Web3, token: str, merchant: MerchantServer, webhook_secret: str, anvil: Any,
    rpc_providers: Callable[..., List[str]],
) -> None:
    """Agent 2 runs 5 confirmations, the others 2: it stops with one CRITICAL line naming the `chain`
    class and SETTLEPROOF_CONFIRMATIONS; the three others settle on, once each."""
    env = settleproof_env(rpc_providers(anvil.url), token, merchant, webhook_secret, 2, w3.eth.block_number)
    net = devnet_factory(4, env, settings=FAST, agent_env={2: {"SETTLEPROOF_CONFIRMATIONS": "5"}})
    net.wait_registered(timeout=TIMEOUT)
    stopped = net.agent(2)
    code = stopped.wait(timeout=TIMEOUT)
    critical = [r["message"] for r in map(parse, stopped.lines) if r is not None and r.get("level") == "CRITICAL"]
    assert code != 0 and len(critical) == 1, (code, stopped.lines[-5:])
    assert critical[0].startswith("stopping: this agent's settings differ from the other agents' in chain (")
    assert "SETTLEPROOF_CONFIRMATIONS" in critical[0]

    payments = Payments(w3, token, merchant)
    payments.pay()
    payments.wait_settled("three agents with one set of settings")
    payments.check_exactly_once()
    for index in (0, 1, 3):
        process = net.agent(index).process
        assert process is not None and process.poll() is None, f"agent {index} exited"
