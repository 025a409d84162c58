"""The IPFS stub satisfies the real ``valory/ipfs`` connection's start-up probe."""

from __future__ import annotations

import asyncio
import importlib
import sysconfig
from pathlib import Path

import pytest
import requests
from aea.configurations.base import ConnectionConfig
from aea.connections.base import ConnectionStates
from aea_cli_ipfs.exceptions import NodeError
from aea_cli_ipfs.ipfs_utils import IPFSTool, is_remote_addr

from settleproof.ipfs_stub import IpfsStub


def _ipfs_connection_class():
    """The real ``valory/ipfs`` connection class.

    pyproject puts the repo root first, so ``packages`` is ./packages, which
    holds ``valory/`` only after ``make install`` (settleproof packages sync).
    Before that, fall back to the identical copy in open-autonomy's wheel by
    adding its folder to ``packages.__path__`` (repo copies still win).
    """
    name = "packages.valory.connections.ipfs.connection"
    try:
        return importlib.import_module(name).IpfsConnection
    except ModuleNotFoundError:
        import packages

        packages.__path__.append(str(Path(sysconfig.get_paths()["purelib"]) / "packages"))
        return importlib.import_module(name).IpfsConnection


IpfsConnection = _ipfs_connection_class()


def test_stub_answers_like_kubo(ipfs_stub: IpfsStub) -> None:
    assert ipfs_stub.url.startswith("http://127.0.0.2:")
    probe = requests.post(ipfs_stub.url + "/api/v0/id", timeout=10)
    assert probe.status_code == 200 and "ID" in probe.json()
    assert requests.get(ipfs_stub.url + "/api/v0/id", timeout=10).status_code == 405
    other = requests.post(ipfs_stub.url + "/api/v0/add", timeout=10)
    assert other.status_code == 500 and "not implemented" in other.json()["Message"]


def test_real_connection_connects_through_stub(ipfs_stub: IpfsStub, tmp_path) -> None:
    config = ConnectionConfig(ipfs_domain=ipfs_stub.multiaddr, connection_id=IpfsConnection.connection_id)
    connection = IpfsConnection(configuration=config, data_dir=str(tmp_path))

    asyncio.run(connection.connect())
    try:
        assert connection.state == ConnectionStates.connected
    finally:
        asyncio.run(connection.disconnect())
    assert ("POST", "/api/v0/id") in ipfs_stub.requests


def test_probe_fails_without_a_node() -> None:
    stub = IpfsStub().start()
    addr = stub.multiaddr
    stub.stop()
    with pytest.raises(NodeError):
        IPFSTool(addr).check_ipfs_node_running()


def test_127_0_0_1_counts_as_local_and_needs_ipfs_binary(tmp_path, monkeypatch) -> None:
    """Why the stub binds 127.0.0.2: a local address makes the tool demand an ``ipfs`` binary."""
    assert not is_remote_addr("127.0.0.1") and is_remote_addr("127.0.0.2")
    monkeypatch.setenv("PATH", str(tmp_path))  # no ipfs binary anywhere
    with pytest.raises(RuntimeError, match="install IPFS"):
        IPFSTool("/ip4/127.0.0.1/tcp/5001/http")
    IPFSTool("/ip4/127.0.0.2/tcp/5001/http")  # remote: constructed without the binary check
