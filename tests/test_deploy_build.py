"""The service deploys through the framework: `autonomy deploy build --kubernetes` succeeds.

docker-compose generation needs a Docker daemon, which these machines lack;
the Kubernetes manifest comes from the same service definition.
"""

import json
import os
import subprocess  # nosec
import sys
from pathlib import Path

import yaml
from eth_account import Account

from settleproof.agent_runner import registry_path


AUTONOMY = str(Path(sys.executable).with_name("autonomy"))


def autonomy(*args: str, cwd: Path, env: dict) -> str:
    """Run the framework's CLI against our local registry; fail with its output."""
    result = subprocess.run(  # nosec
        [AUTONOMY, "--registry-path", str(registry_path()), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_kubernetes_deployment_of_four_agents(tmp_path: Path) -> None:
    """Four agent pods, each with its own Tendermint node and our settings passed through."""
    accounts = [Account.create() for _ in range(4)]
    participants = [a.address for a in accounts]
    env = {
        **os.environ,
        "ALL_PARTICIPANTS": json.dumps(participants),
        "SETTLEPROOF_RPC_ENDPOINTS": "http://rpc-a.example:8545,http://rpc-b.example:8545",
        "SETTLEPROOF_TOKEN_ADDRESS": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
    }
    autonomy("fetch", "--local", "--service", "settleproof/settleproof:0.1.0", "--alias", "svc",
             cwd=tmp_path, env=env)
    service = tmp_path / "svc"
    keys = [{"address": a.address, "private_key": "0x" + bytes(a.key).hex()} for a in accounts]
    (service / "keys.json").write_text(json.dumps(keys))
    autonomy("deploy", "build", "keys.json", "--kubernetes", "--o", "build", cwd=service, env=env)

    documents = list(yaml.safe_load_all((service / "build" / "build.yaml").read_text()))
    deployments = [d for d in documents if d and d.get("kind") == "Deployment"]
    assert len(deployments) == 4
    for deployment in deployments:
        containers = deployment["spec"]["template"]["spec"]["containers"]
        names = sorted(c["name"] for c in containers)
        assert names[0] == "aea" and names[1].startswith("node"), names
        agent_env = {
            e["name"]: e.get("value")
            for c in containers
            for e in c.get("env", [])
        }
        assert agent_env["SETTLEPROOF_RPC_ENDPOINTS"] == env["SETTLEPROOF_RPC_ENDPOINTS"]
        assert agent_env["SETTLEPROOF_TOKEN_ADDRESS"] == env["SETTLEPROOF_TOKEN_ADDRESS"]
        assert json.loads(agent_env["ALL_PARTICIPANTS"]) == participants
        # /metrics and /healthcheck: one port per pod, reachable by a scraper in the cluster.
        assert agent_env["CONNECTION_HTTP_SERVER_CONFIG_PORT"] == "8000"
        assert agent_env["CONNECTION_HTTP_SERVER_CONFIG_HOST"] == "0.0.0.0"  # nosec: inside the pod
        # RPC and invoice reads go through our rpc_client connection, with its cap and timeout.
        assert agent_env["CONNECTION_RPC_CLIENT_CONFIG_MAX_BODY_BYTES"] == str(16 * 1024 * 1024)
        assert agent_env["CONNECTION_RPC_CLIENT_CONFIG_TIMEOUT"] == "10.0"
