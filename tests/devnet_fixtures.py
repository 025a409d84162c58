"""Devnet fixtures: agent folders fetched once per session, and devnets that are always stopped.

Import the fixtures into a test module (``from tests.devnet_fixtures import
devnet_factory, devnet_templates  # noqa: F401``). Fetching an agent takes
about ten seconds of CPU, so each agent index is fetched once per session (on
first use) and every devnet gets copies of those folders and keys.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping

import pytest

from settleproof.devnet.agents import AgentSlot, prepare_all
from settleproof.devnet.network import Devnet


#: Loopback settings that pass the agents' configuration check without any service behind them.
OFFLINE_ENV: Dict[str, str] = {
    "SETTLEPROOF_RPC_ENDPOINTS": "http://127.0.0.1:9,http://127.0.0.2:9",
    "SETTLEPROOF_TOKEN_ADDRESS": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "SETTLEPROOF_INVOICES_URL": "http://127.0.0.1:9/invoices?status=open",
    "SETTLEPROOF_WEBHOOK_URL": "http://127.0.0.1:9/webhook",
    "SETTLEPROOF_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


class AgentTemplates:
    """Agent folders under one session dir, fetched on first use."""

    def __init__(self, root: Path) -> None:
        """Nothing is fetched yet."""
        self.root = root
        self._ready: set = set()
        self._lock = threading.Lock()

    def ensure(self, count: int) -> List[AgentSlot]:
        """Slots 0..count-1, fetching the missing ones in parallel."""
        slots = [AgentSlot(index, self.root) for index in range(count)]
        with self._lock:
            missing = [slot for slot in slots if slot.index not in self._ready]
            if missing:
                prepare_all(missing, refresh=False)
                self._ready.update(slot.index for slot in missing)
        return slots

    def copy_to(self, root: Path, count: int) -> None:
        """Give a devnet data dir the first ``count`` agents (folders and keys)."""
        for slot in self.ensure(count):
            target = AgentSlot(slot.index, root)
            shutil.copytree(slot.folder, target.folder)
            target.key_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(slot.key_file, target.key_file)


@pytest.fixture(scope="session")
def devnet_templates(tmp_path_factory: pytest.TempPathFactory) -> AgentTemplates:
    """Agent folders shared by the session's devnets."""
    return AgentTemplates(tmp_path_factory.mktemp("devnet-templates"))


@pytest.fixture
def devnet_factory(devnet_templates: AgentTemplates, tmp_path: Path) -> Iterator[Callable[..., Devnet]]:
    """``make(agents, env, **devnet_kwargs)`` starts a devnet; every one is stopped after the test."""
    started: List[Devnet] = []

    def make(agents: int, env: Mapping[str, str], **kwargs: Any) -> Devnet:
        root = tmp_path / f"devnet{len(started)}"
        devnet_templates.copy_to(root, agents)
        net = Devnet(agents, root, env=env, **kwargs)
        started.append(net)
        net.prepare(refresh=False)
        return net.start()

    yield make
    for net in reversed(started):
        net.stop()

