"""The real Tendermint binary, and one testnet of N validator homes configured for loopback.

``tendermint testnet`` makes the genesis (N validators, power 1 each) and a
key per node; we then give each home its consensus timeouts and its peers.
Listen addresses and the ABCI address are not written here: the framework's
control server passes them to ``tendermint node`` as flags.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess  # nosec: we run our own tendermint binary
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from settleproof.paths import repo_root


#: The version open-autonomy checks for (LOCAL_TENDERMINT_VERSION) and Valory's images run.
TENDERMINT_VERSION = "0.34.19"
TENDERMINT_ENV = "SETTLEPROOF_TENDERMINT"
TENDERMINT_RELPATH = Path(".tools/bin/tendermint")
CHAIN_ID = "settleproof-devnet"
TIME_IOTA_MS = "1"


class TendermintError(RuntimeError):
    """The binary is missing or a tendermint command failed."""


def tendermint_binary() -> Path:
    """``$SETTLEPROOF_TENDERMINT`` if set, else the binary ``make install`` built into ``.tools/bin``."""
    configured = os.environ.get(TENDERMINT_ENV)
    path = Path(configured) if configured else repo_root() / TENDERMINT_RELPATH
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise TendermintError(f"tendermint not found at {path}: run `make install` (or set {TENDERMINT_ENV})")
    return path


def binary_version(binary: Path) -> str:
    """What ``tendermint version`` prints."""
    return _run([str(binary), "version"]).strip()


def _run(args: List[str]) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)  # nosec
    if result.returncode != 0:
        raise TendermintError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Timeouts:
    """Consensus timeouts in seconds; ``timeout_commit`` sets the pace of blocks."""

    commit: float
    propose: float
    prevote: float
    precommit: float

    @classmethod
    def for_block_interval(cls, interval: float) -> "Timeouts":
        """A block every ``interval`` seconds when all is well; a silent proposer costs ``propose``.

        The vote timeouts only run once +2/3 of votes arrived without agreeing,
        so they can be short; the proposal timeout must leave a busy 2-core
        machine time to build and gossip a block.
        """
        return cls(commit=interval, propose=max(1.0, 2 * interval), prevote=max(0.5, interval / 2),
                   precommit=max(0.5, interval / 2))

    def settings(self) -> Dict[str, str]:
        """As ``config.toml`` writes them."""
        return {f"timeout_{name}": f'"{int(round(seconds * 1000))}ms"' for name, seconds in vars(self).items()}


def node_id(home: Path) -> str:
    """The node's P2P id: the first 20 bytes of SHA-256 of its ed25519 public key, hex (Tendermint's ``PubKeyToID``)."""
    key = json.loads((home / "config" / "node_key.json").read_text())["priv_key"]["value"]
    public = base64.b64decode(key)[32:]
    return hashlib.sha256(public).digest()[:20].hex()


def create_testnet(binary: Path, count: int, out: Path) -> List[Path]:
    """``count`` fresh validator homes under ``out`` (removed first), one genesis for all; their paths."""
    if out.exists():
        shutil.rmtree(out)
    _run([str(binary), "testnet", "--v", str(count), "--o", str(out), "--starting-ip-address", "127.0.0.1",
          "--populate-persistent-peers=false"])
    homes = [out / f"node{index}" for index in range(count)]
    for home in homes:
        genesis_file = home / "config" / "genesis.json"
        genesis = json.loads(genesis_file.read_text())
        genesis["chain_id"] = CHAIN_ID
        # v0.34 stamps each block at least `time_iota_ms` after the previous one (1000 by default).
        # With blocks faster than that, block time runs ahead of the wall clock, and the agents'
        # round timeouts (on block time) fire early; 1 ms lets block time follow the validators'
        # clocks, as Tendermint does from v0.35 on, where the parameter is gone.
        genesis["consensus_params"]["block"]["time_iota_ms"] = TIME_IOTA_MS
        genesis_file.write_text(json.dumps(genesis, indent=2))
    return homes


def configure(home: Path, peers: List[str], timeouts: Timeouts, moniker: str) -> None:
    """Write the node's peers (``id@127.0.0.1:port``), loopback P2P rules and consensus timeouts."""
    settings = {
        "moniker": f'"{moniker}"',
        "persistent_peers": '"' + ",".join(peers) + '"',
        # Every node is on 127.0.0.1, and its peers' addresses are not routable.
        "allow_duplicate_ip": "true",
        "addr_book_strict": "false",
        # Loopback: send small consensus messages at once rather than every 100 ms.
        "flush_throttle_timeout": '"10ms"',
        **timeouts.settings(),
    }
    path = home / "config" / "config.toml"
    text = path.read_text()
    for key, value in settings.items():
        text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        if found != 1:
            raise TendermintError(f"{path}: expected one `{key} =` line, found {found}")
    path.write_text(text)
