"""The local network with real `aea run` agents on real Tendermint validators: RPC, resets, the CLI, the service on it.

Every wait is on an event (an agent's log line, the merchant's state), every
process is stopped by the fixtures, and all traffic stays on loopback.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess  # nosec: we start our own CLI
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, List

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

from packages.valory.skills.abstract_round_abci.base import Transaction
from packages.valory.skills.registration_abci.payloads import RegistrationPayload
from settleproof.agent_logs import checkpoint_at_least, event
from settleproof.devnet.agents import FETCHED_HASH, AgentSlot, FrameworkSettings, registry_agent_hash
from settleproof.devnet.network import Devnet
from settleproof.erc20 import transfer
from settleproof.merchant import MerchantServer
from settleproof.service_env import settleproof_env
from tests.devnet_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    OFFLINE_ENV,
    AgentTemplates,
    devnet_factory,
    devnet_templates,
)


pytestmark = pytest.mark.e2e

FAST = FrameworkSettings(round_timeout=15.0, reset_pause_duration=10)


def get_json(url: str) -> Any:
    """GET a JSON body, also from a non-2xx answer (Tendermint answers errors with 500)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # nosec: loopback
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def signed_tx(key: str, sender: str) -> str:
    """A registration payload from ``sender`` signed with ``key``, as the framework encodes txs (hex)."""
    payload = RegistrationPayload(sender=sender, initialisation="{}")
    message = encode_defunct(primitive=payload.encode())
    signature = Account.sign_message(message, key).signature.to_0x_hex()
    return Transaction(payload, signature).encode().hex()


def test_one_agent_on_a_real_validator(devnet_factory: Callable[..., Devnet]) -> None:
    """A real node drives a real agent through registration; CheckTx and DeliverTx verdicts are the agent's."""
    net = devnet_factory(1, OFFLINE_ENV, settings=FAST)
    net.agent(0).wait_for(event("keeper selected", period=0), 120, "the keeper of period 0")
    rpc = net.node(0).rpc_url

    status = get_json(f"{rpc}/status")["result"]
    assert int(status["sync_info"]["latest_block_height"]) >= 1
    assert status["node_info"]["network"] == "settleproof-devnet"
    assert status["node_info"]["version"] == "0.34.19"
    assert get_json(f"{rpc}/net_info")["result"]["n_peers"] == "0"

    agent_key = (net.slots[0].folder / "ethereum_private_key.txt").read_text().strip()
    address = net.addresses[0]
    forged = get_json(f"{rpc}/broadcast_tx_sync?tx=0x{signed_tx(Account.create().key, address)}")["result"]
    assert forged["code"] != 0  # the agent's CheckTx said no (Tendermint's broadcast reply carries no `info`)
    # Not JSON, and JSON nested 200,000 deep (which once killed the agent with SIGSEGV inside
    # json.loads, see settlement_abci.models.SAFE_RECURSION_LIMIT): refused, and the agent lives.
    for garbage in (b"not json", b'{"payload": ' + b"[" * 200_000 + b"}"):
        refused = get_json(f"{rpc}/broadcast_tx_sync?tx=0x{garbage.hex()}")["result"]
        assert refused["code"] != 0
    assert net.agent(0).process is not None and net.agent(0).process.poll() is None

    # Well signed, so CheckTx passes; but no round wants a registration now, so DeliverTx refuses it.
    # broadcast_tx_commit returns once the tx is in a committed block, with the app's DeliverTx verdict.
    committed = get_json(f"{rpc}/broadcast_tx_commit?tx=0x{signed_tx(agent_key, address)}")["result"]
    assert committed["check_tx"]["code"] == 0
    verdict = committed["deliver_tx"]
    assert verdict["code"] != 0 and "RegistrationPayload" in verdict["info"]  # the agent's own DeliverTx verdict

    manifest = json.loads((net.data_dir / "devnet.json").read_text())
    agent = manifest["agents"][0]
    assert agent["pid"] == net.agent(0).pid and agent["metrics_port"] == int(net.metrics_url(0).rsplit(":", 1)[1])
    node = agent["node"]
    assert node["rpc_port"] == net.node(0).ports.rpc and node["control_pid"] == net.node(0).pid
    assert node["pid"] == net.node(0).node_pid() and node["home"] == str(net.node(0).home)
    assert get_json(f"http://127.0.0.1:{node['com_port']}/app_hash")["app_hash"]  # the framework's control server


@pytest.mark.parametrize("anvil", [{"block_time": 1}], indirect=True)
def test_four_agents_confirm_each_paid_invoice_once(  # pylint: disable=too-many-locals
    devnet_factory: Callable[..., Devnet], w3: Web3, token: str, merchant: MerchantServer, webhook_secret: str,
    anvil: Any, rpc_providers: Callable[..., List[str]],
) -> None:
    """4 agents, 3 providers (proxies) for one anvil: each paid invoice reaches the merchant once, verified."""
    payer = w3.eth.accounts[1]
    shops = [Account.create().address for _ in range(3)]
    invoices = [merchant.add_invoice(token=token, receiver=shop, amount="1000") for shop in shops]
    providers = rpc_providers(anvil.url, 3)
    env = settleproof_env(providers, token, merchant, webhook_secret, 2, w3.eth.block_number)
    net = devnet_factory(4, env, settings=FAST)
    # Pay while the agents boot; the payments are deep enough by the time they observe.
    paid = [transfer(w3, token, payer, shop, 1000) for shop in shops]
    net.wait_registered(timeout=180)

    events = merchant.wait_for_events(len(invoices), timeout=120)
    last_block = max(payment.block_number for payment in paid)
    for index in range(4):
        net.agent(index).wait_for(checkpoint_at_least(last_block), 60, f"agent {index} checkpoint")

    expected = {f"{invoice['uuid']}:{payment.tx_hash}" for invoice, payment in zip(invoices, paid)}
    assert {event["id"] for event in events} == expected
    report = merchant.report()
    assert report["rejected"] == 0 and not report["duplicates"] and not report["conflicts"]
    delivered: List[int] = [attempt["status"] for attempt in report["attempts"]]
    assert delivered == [204] * len(invoices)  # one POST per event: no retry, no second keeper


def _first_line(cli: subprocess.Popen, lines: "queue.Queue[str]", timeout: float) -> str:
    """The CLI's first stdout line; fail at once, with its stderr, if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return lines.get(timeout=0.5)
        except queue.Empty:
            if cli.poll() is not None:
                pytest.fail(f"devnet up exited with {cli.returncode}: {cli.stderr.read()}")  # type: ignore[union-attr]
    pytest.fail(f"devnet up printed nothing in {timeout}s")


def _kill_leftovers(cli: subprocess.Popen, manifest: Path) -> None:
    """After a failure: kill the CLI and the agents and nodes it recorded, each by its own PID."""
    if cli.poll() is None:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(10)
    if manifest.exists():
        for agent in json.loads(manifest.read_text())["agents"]:
            node = agent.get("node") or {}
            for pid in (agent["pid"], node.get("control_pid"), node.get("pid")):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError, TypeError):
                    pass


def test_cli_up_prints_one_line_writes_the_manifest_and_stops_everything(
    devnet_templates: AgentTemplates, tmp_path: Path,  # noqa: F811
) -> None:
    """`settleproof devnet up` on a data dir that already holds the agent: one line, devnet.json, clean SIGINT."""
    root = tmp_path / "cli"
    devnet_templates.copy_to(root, 1)
    (AgentSlot(0, root).folder / FETCHED_HASH).write_text(registry_agent_hash())  # up to date: no re-fetch
    command = [str(Path(sys.executable).with_name("settleproof")), "devnet", "up", "--agents", "1",
               "--data-dir", str(root)]
    cli = subprocess.Popen(  # nosec
        command, env={**os.environ, **OFFLINE_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    lines: "queue.Queue[str]" = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in cli.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    manifest = root / "devnet.json"
    try:
        first = _first_line(cli, lines, timeout=120)
        assert re.fullmatch(r"devnet: 1 agents registered, chain at height \d+; see .*; Ctrl-C to stop\n", first)
        agent = json.loads(manifest.read_text())["agents"][0]
        assert agent["address"] == Account.from_key(AgentSlot(0, root).key_file.read_text().strip()).address
        started = [agent["pid"], agent["node"]["control_pid"], agent["node"]["pid"]]
        for pid in started:
            os.kill(pid, 0)  # the agent, the control server and the node run
        cli.send_signal(signal.SIGINT)
        assert cli.wait(60) == 0
        reader.join(10)
        assert lines.empty()  # exactly one line on stdout
        for pid in started:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        _kill_leftovers(cli, manifest)
