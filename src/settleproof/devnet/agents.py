"""Agent folders, keys and environments for a devnet under one data dir.

Layout of the data dir ``D``::

    D/keys/agent<i>.txt     the agent's Ethereum key: kept, so a restart on D keeps every identity
    D/agents/agent<i>/      the agent fetched from the local registry (fetched again when the
                            registry's agent hash changed; nothing in it needs to survive)
    D/data/agent<i>/        SETTLEPROOF_DATA_DIR (the agent's durable store); $SETTLEPROOF_DATA_DIR/agent<i>/ if set
    D/logs/                 agent<i>.log and devnet.log
    D/devnet.json           what runs where (written by ``Devnet``)
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from settleproof import agent_runner


SKILL_PARAMS = agent_runner.SKILL_PARAMS
FETCHED_HASH = ".settleproof-agent-hash"  # registry hash of the agent a folder was fetched at
LEDGER_ADDRESS = "CONNECTION_LEDGER_CONFIG_LEDGER_APIS_ETHEREUM_ADDRESS"


@dataclass(frozen=True)
class AgentSlot:
    """Where agent ``index`` lives under the data dir."""

    index: int
    root: Path

    @property
    def name(self) -> str:
        """``agent<i>``: the folder, key and log name."""
        return f"agent{self.index}"

    @property
    def key_file(self) -> Path:
        """The persisted private key."""
        return self.root / "keys" / f"{self.name}.txt"

    @property
    def folder(self) -> Path:
        """The fetched agent."""
        return self.root / "agents" / self.name

    @property
    def data_dir(self) -> Path:
        """The default durable store."""
        return self.root / "data" / self.name

    @property
    def log_path(self) -> Path:
        """Everything the agent prints."""
        return self.root / "logs" / f"{self.name}.log"


def registry_agent_hash() -> str:
    """The agent's hash in the registry's ``packages.json``: it changes whenever any of its packages does."""
    lock = json.loads((agent_runner.registry_path() / "packages.json").read_text())
    author, name, version = agent_runner.AGENT_PUBLIC_ID.replace(":", "/").split("/")
    return str(lock.get("dev", {}).get(f"agent/{author}/{name}/{version}", ""))


def prepare(slot: AgentSlot, refresh: bool = True) -> str:
    """Fetch the agent into ``slot.folder`` with the slot's key (created once); its address.

    With ``refresh``, an existing folder is fetched again when the registry's
    agent hash changed since, so a restart runs the registry's current code.
    """
    stamp = slot.folder / FETCHED_HASH
    current = registry_agent_hash() if refresh else ""
    if refresh and slot.folder.exists() and (not stamp.exists() or stamp.read_text() != current):
        shutil.rmtree(slot.folder)
    key = slot.key_file.read_text().strip() if slot.key_file.exists() else None
    folder = agent_runner.prepare_agent(slot.folder.parent, slot.name, private_key=key)
    if refresh:
        stamp.write_text(current)
    if key is None:
        slot.key_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "ethereum_private_key.txt", slot.key_file)
        slot.key_file.chmod(0o600)
    return agent_runner.agent_address(folder)


def prepare_all(slots: List[AgentSlot], refresh: bool = True) -> List[str]:
    """``prepare`` every slot, a few at a time (a fetch is mostly CPU); the addresses in slot order."""
    workers = max(1, min(len(slots), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda slot: prepare(slot, refresh), slots))


@dataclass(frozen=True)
class FrameworkSettings:
    """The framework parameters a devnet sets on every agent."""

    round_timeout: float = 30.0
    reset_pause_duration: int = 10
    reset_tendermint_after: Optional[int] = None  # None: the agent's own default


def agent_env(  # pylint: disable=too-many-arguments
    slot: AgentSlot,
    participants: List[str],
    abci_port: int,
    rpc_url: str,
    com_url: str,
    ipfs_multiaddr: str,
    settings: FrameworkSettings,
    user_env: Mapping[str, str],
) -> Dict[str, str]:
    """The user's SETTLEPROOF_* settings plus this agent's ports, its store and the framework knobs."""
    env = {key: value for key, value in user_env.items() if key.startswith("SETTLEPROOF_")}
    # One store per agent: a user-set folder gets one sub-folder per agent.
    user_data_dir = env.get("SETTLEPROOF_DATA_DIR")
    env["SETTLEPROOF_DATA_DIR"] = (
        str(Path(user_data_dir) / slot.name) if user_data_dir else str(slot.data_dir)
    )
    endpoints = [url.strip() for url in env.get("SETTLEPROOF_RPC_ENDPOINTS", "").split(",") if url.strip()]
    if endpoints:
        env[LEDGER_ADDRESS] = endpoints[0]
    env.update(
        agent_runner.framework_env(
            participants=participants,
            abci_port=abci_port,
            tendermint_rpc_url=rpc_url,
            tendermint_com_url=com_url,
            ipfs_multiaddr=ipfs_multiaddr,
            use_mock=False,
            round_timeout_seconds=settings.round_timeout,
            reset_pause_duration=settings.reset_pause_duration,
        )
    )
    if settings.reset_tendermint_after is not None:
        env[f"{SKILL_PARAMS}RESET_TENDERMINT_AFTER"] = str(settings.reset_tendermint_after)
    return env
