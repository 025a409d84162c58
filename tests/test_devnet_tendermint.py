"""The local network's parts below the agents: the binary and its build, testnet homes, P2P links, the control server.

The binary is the one ``make install`` built; the links carry real TCP; the
control server's stop order is checked on a stand-in node, since the race it
closes needs a loaded machine to show.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess  # nosec: we run our own binary and make
from pathlib import Path
from typing import List

import pytest

from settleproof.devnet import tendermint
from settleproof.devnet.control_server import stop_monitor_first
from settleproof.devnet.links import PeerLinks
from settleproof.paths import repo_root


@pytest.fixture(scope="module")
def binary() -> Path:
    """The Tendermint ``make install`` built."""
    return tendermint.tendermint_binary()


def test_the_binary_is_the_version_the_framework_expects(binary: Path) -> None:
    """``make install`` built v0.34.19, the version open-autonomy checks for."""
    from autonomy.deploy.generators.localhost.utils import (  # pylint: disable=import-outside-toplevel
        LOCAL_TENDERMINT_VERSION,
    )

    assert tendermint.binary_version(binary) == tendermint.TENDERMINT_VERSION == LOCAL_TENDERMINT_VERSION


def test_make_tendermint_skips_a_built_binary_and_names_a_missing_go(tmp_path: Path) -> None:
    """Idempotent when the version is there; without Go, one clear line and a failure."""
    make = shutil.which("make")
    assert make is not None
    root = repo_root()
    built = subprocess.run([make, "-s", "tendermint"], cwd=root, capture_output=True, text=True,
                           timeout=120, check=False)  # nosec
    assert built.returncode == 0 and built.stdout == "" and "building" not in built.stderr
    # The system's tools (grep, mkdir) without any folder that holds a `go`.
    path = [folder for folder in os.environ["PATH"].split(os.pathsep) if not (Path(folder) / "go").exists()]
    no_go = {**os.environ, "PATH": os.pathsep.join(path)}
    missing = subprocess.run([make, "-s", "tendermint", f"TENDERMINT={tmp_path}/tendermint"], cwd=root,
                             env=no_go, capture_output=True, text=True, timeout=60, check=False)  # nosec
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines()[0].startswith("make install: no Go toolchain on PATH")


def test_testnet_homes_share_one_genesis_and_name_their_peers(binary: Path, tmp_path: Path) -> None:
    """One genesis with 4 validators, a key per node, our chain id; peers, loopback rules and timeouts written."""
    homes = tendermint.create_testnet(binary, 4, tmp_path / "nodes")
    genesis = [json.loads((home / "config" / "genesis.json").read_text()) for home in homes]
    assert all(g == genesis[0] for g in genesis) and genesis[0]["chain_id"] == tendermint.CHAIN_ID
    assert len(genesis[0]["validators"]) == 4
    assert genesis[0]["consensus_params"]["block"]["time_iota_ms"] == "1"  # block time follows the clocks
    ids = [tendermint.node_id(home) for home in homes]
    shown = subprocess.run([str(binary), "show-node-id", "--home", str(homes[0])], capture_output=True,
                           text=True, timeout=30, check=True).stdout.strip()  # nosec
    assert ids[0] == shown and len(set(ids)) == 4

    timeouts = tendermint.Timeouts.for_block_interval(0.5)
    assert (timeouts.commit, timeouts.propose, timeouts.prevote) == (0.5, 1.0, 0.5)
    peers = [f"{ids[1]}@127.0.0.1:20001", f"{ids[2]}@127.0.0.1:20002"]
    tendermint.configure(homes[0], peers, timeouts, moniker="node0")
    config = (homes[0] / "config" / "config.toml").read_text()
    assert f'persistent_peers = "{",".join(peers)}"' in config
    assert "allow_duplicate_ip = true" in config and "addr_book_strict = false" in config
    assert 'timeout_commit = "500ms"' in config and 'timeout_propose = "1000ms"' in config
    # Tendermint itself reads the file back (a malformed config.toml would fail here).
    subprocess.run([str(binary), "show-validator", "--home", str(homes[0])], capture_output=True,
                   timeout=30, check=True)  # nosec


def test_configure_refuses_a_config_it_does_not_recognise(tmp_path: Path) -> None:
    """A config.toml without the expected keys is an error naming the key, not a silent no-op."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("moniker = \"x\"\n")
    with pytest.raises(tendermint.TendermintError, match="persistent_peers"):
        tendermint.configure(tmp_path, [], tendermint.Timeouts.for_block_interval(1.0), "x")


def _echo_server() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    return server


def _round_trip(port: int, payload: bytes, server: socket.socket) -> bytes:
    """Send through the link; the far end echoes; what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        far, _ = server.accept()
        with far:
            client.sendall(payload)
            far.sendall(far.recv(1024))
            return client.recv(1024)


def test_links_forward_bytes_and_a_cut_node_reaches_no_one() -> None:
    """Link (0, 1) forwards to node 1; cutting node 1 closes its open connections and refuses new ones."""
    servers = {index: _echo_server() for index in range(3)}
    links = PeerLinks(3).start({index: server.getsockname()[1] for index, server in servers.items()})
    try:
        assert _round_trip(links.port(0, 1), b"ping", servers[1]) == b"ping"
        open_client = socket.create_connection(("127.0.0.1", links.port(2, 1)), timeout=10)
        far, _ = servers[1].accept()
        links.cut(1)
        assert open_client.recv(1024) == b""  # the open connection was closed
        with socket.create_connection(("127.0.0.1", links.port(0, 1)), timeout=10) as refused:
            assert refused.recv(1024) == b""  # accepted, then closed at once
        assert _round_trip(links.port(0, 2), b"still", servers[2]) == b"still"  # others untouched
        links.heal(1)
        assert _round_trip(links.port(2, 1), b"back", servers[1]) == b"back"
        open_client.close()
        far.close()
    finally:
        links.stop()
        for server in servers.values():
            server.close()


class _Monitor:
    def __init__(self, calls: List[str]) -> None:
        self.calls = calls

    def stop(self) -> None:
        self.calls.append("monitor stopped")


class _Node:
    """Stands in for the framework's TendermintNode: records the order of what stop() does."""

    def __init__(self) -> None:
        self.calls: List[str] = []
        self._monitoring = _Monitor(self.calls)

    def stop(self) -> None:
        self.calls.append("node stopped")


def test_stop_tells_the_monitor_before_the_node() -> None:
    """The monitor must not restart a node that /hard_reset is stopping (see control_server)."""
    node = _Node()
    stop_monitor_first(node)
    node.stop()
    assert node.calls == ["monitor stopped", "node stopped"]
