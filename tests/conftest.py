"""Shared fixtures for the cross-package tests: a dev chain, a token, a merchant, an IPFS stub.

Every process or server a fixture starts is stopped in its teardown (by PID
for anvil), also when the test failed. Tests using the chain are marked
``e2e`` automatically, so ``-m "not e2e"`` runs the in-process ones only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

try:  # tolerate a run without PYTHONPATH=src / an installed package
    import settleproof  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from web3 import Web3  # noqa: E402

from settleproof.anvil import Anvil  # noqa: E402
from settleproof.chaos import ChaosServer  # noqa: E402
from settleproof.erc20 import deploy_token  # noqa: E402
from settleproof.ipfs_stub import IpfsStub  # noqa: E402
from settleproof.merchant import MerchantServer, new_secret  # noqa: E402

#: Fixtures that start external processes; tests using them get the e2e marker.
PROCESS_FIXTURES = {"anvil", "anvil_factory", "w3", "token"}


def pytest_configure(config: pytest.Config) -> None:
    """Register our markers here because pyproject belongs to someone else."""
    config.addinivalue_line("markers", "e2e: starts external processes (anvil); deselect with -m 'not e2e'")


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Mark every test that (transitively) uses a process fixture as e2e."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def anvil(request: pytest.FixtureRequest) -> Iterator[Anvil]:
    """One anvil per session (per option set): automine by default.

    Choose interval mining with indirect parametrization::

        @pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
    """
    options: Dict[str, Any] = getattr(request, "param", None) or {}
    with Anvil(**options) as node:
        yield node


@pytest.fixture
def anvil_factory() -> Iterator[Callable[..., Anvil]]:
    """Start extra anvils with any options; all are stopped after the test."""
    started: List[Anvil] = []

    def start(**options: Any) -> Anvil:
        node = Anvil(**options)
        started.append(node)
        return node.start()

    yield start
    for node in reversed(started):
        node.stop()


@pytest.fixture
def rpc_providers() -> Iterator[Callable[..., List[str]]]:
    """``providers(upstream, count=2)``: URLs of ``count`` honest chaos proxies in front of one node.

    The agents refuse two spellings of one host and port as providers (they would fake a quorum),
    so several providers of one anvil are proxies, each on a port of its own. All stop after the test.
    """
    started: List[ChaosServer] = []

    def start(upstream: str, count: int = 2) -> List[str]:
        proxies = [ChaosServer(upstream).start() for _ in range(count)]
        started.extend(proxies)
        return [proxy.url for proxy in proxies]

    yield start
    for proxy in reversed(started):
        proxy.stop()


@pytest.fixture
def w3(anvil: Anvil) -> Web3:
    """web3 connected to the session anvil."""
    return Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))


@pytest.fixture
def token(w3: Web3) -> str:
    """A fresh token per test (so log filters by address see only this test's logs); dev accounts funded."""
    return deploy_token(w3)


@pytest.fixture
def webhook_secret() -> str:
    """A fresh ``whsec_`` secret per test."""
    return new_secret()


@pytest.fixture
def merchant(webhook_secret: str) -> Iterator[MerchantServer]:
    """A merchant simulator on a free 127.0.0.1 port, stopped after the test."""
    with MerchantServer(webhook_secret) as server:
        yield server


@pytest.fixture
def ipfs_stub() -> Iterator[IpfsStub]:
    """An IPFS probe responder on 127.0.0.2 (see settleproof.ipfs_stub for why not .1)."""
    with IpfsStub() as stub:
        yield stub
