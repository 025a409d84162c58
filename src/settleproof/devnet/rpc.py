"""HTTP faces of one agent's node: the Tendermint RPC subset the framework calls, and the com server.

Shapes follow Tendermint 0.34's JSON-RPC over HTTP GET (what
``abstract_round_abci/behaviour_utils.py`` parses) and the framework's own node
wrapper ``autonomy/deploy/generators/localhost/tendermint/app.py`` for the com
endpoints. One deliberate difference: ``/tx`` holds the request for up to
``tx_wait`` seconds until the tx is committed on this node, then answers as
Tendermint would at that moment; agents poll ``/tx`` right after
``/broadcast_tx_sync`` and would otherwise sleep a full retry delay per round.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Callable, Dict, List, Optional

from aiohttp import web

from settleproof.devnet.abci_client import AbciError
from settleproof.devnet.chain import Genesis, format_time, parse_time, tx_hash
from settleproof.devnet.node import AgentNode, RestartFailed, TxResult
from settleproof.devnet.validator import LOG, MempoolError, Validator

INTERNAL_ERROR = -32603
INVALID_PARAMS = -32602


def node_id(index: int) -> str:
    """A stable 40-hex-digit node id per agent index."""
    return hashlib.sha256(f"settleproof-devnet-node-{index}".encode()).hexdigest()[:40]


def _pub_key(index: int) -> bytes:
    return hashlib.sha256(f"settleproof-devnet-validator-{index}".encode()).digest()


def validator_address(index: int) -> str:
    """What a Tendermint validator address looks like: upper hex of 20 bytes of the pub key's hash."""
    return hashlib.sha256(_pub_key(index)).hexdigest()[:40].upper()


def _rpc(result: Any) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": -1, "result": result})


def _rpc_error(data: str, code: int = INTERNAL_ERROR, message: str = "Internal error") -> web.Response:
    body = {"jsonrpc": "2.0", "id": -1, "error": {"code": code, "message": message, "data": data}}
    return web.json_response(body, status=500)


def _b64(data: bytes) -> Optional[str]:
    return base64.b64encode(data).decode() if data else None


def _hex_param(request: web.Request, name: str) -> str:
    """A hex query parameter as Tendermint accepts it: ``0x…`` or quoted, any case."""
    return request.query.get(name, "").strip('"').removeprefix("0x").removeprefix("0X")


class NodeHttp:
    """The RPC and com routes of one node; ``peers`` counts the other live nodes for ``/net_info``."""

    def __init__(self, node: AgentNode, validator: Validator, peers: Callable[[], List[AgentNode]],
                 tx_wait: float) -> None:
        """Serve ``node``; txs it accepts go to ``validator``'s mempool."""
        self.node, self.validator, self.peers, self.tx_wait = node, validator, peers, tx_wait
        self.tm_params: Dict[str, Any] = {}

    # ------------------------------------------------------------------ apps
    def rpc_app(self) -> web.Application:
        """Tendermint RPC: /status, /broadcast_tx_sync, /tx, /net_info."""
        app = web.Application()
        app.router.add_get("/status", self.status)
        app.router.add_get("/broadcast_tx_sync", self.broadcast_tx_sync)
        app.router.add_get("/tx", self.tx)
        app.router.add_get("/net_info", self.net_info)
        return app

    def com_app(self) -> web.Application:
        """The com server: /params (GET, POST), /gentle_reset, /hard_reset, /app_hash."""
        app = web.Application()
        app.router.add_get("/params", self.get_params)
        app.router.add_post("/params", self.post_params)
        app.router.add_get("/gentle_reset", self.gentle_reset)
        app.router.add_get("/hard_reset", self.hard_reset)
        app.router.add_get("/app_hash", self.app_hash)
        return app

    # ------------------------------------------------------------------ RPC
    def _node_info(self) -> Dict[str, Any]:
        index = self.node.index
        return {
            "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
            "id": node_id(index),
            "listen_addr": "tcp://127.0.0.1:0",
            "network": self.node.chain.genesis.chain_id,
            "version": "0.34.19",
            "channels": "",
            "moniker": f"agent{index}",
            "other": {"tx_index": "on", "rpc_address": ""},
        }

    async def status(self, _request: web.Request) -> web.Response:
        """Height and time of the newest block this node holds (what ``_check_sync`` compares)."""
        node, chain = self.node, self.node.chain
        height = node.status_height
        known = height >= chain.genesis.initial_height
        block = chain.block(height) if known else None
        app_hash = node.app_hashes.get(height - 1, b"")
        return _rpc({
            "node_info": self._node_info(),
            "sync_info": {
                "latest_block_hash": block.hash.hex().upper() if block else "",
                "latest_app_hash": app_hash.hex().upper(),
                "latest_block_height": str(height),
                "latest_block_time": format_time(block.time_ns if block else chain.genesis.time_ns),
                "earliest_block_height": str(chain.genesis.initial_height if known else 0),
                "catching_up": node.committed < chain.head,
            },
            "validator_info": {
                "address": validator_address(node.index),
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": _b64(_pub_key(node.index))},
                "voting_power": "0",
            },
        })

    async def broadcast_tx_sync(self, request: web.Request) -> web.Response:
        """CheckTx on this node's agent; if it passes, into the validator's mempool."""
        try:
            tx = bytes.fromhex(_hex_param(request, "tx"))
        except ValueError:
            return _rpc_error("tx: invalid hex", INVALID_PARAMS, "Invalid params")
        try:
            check = await self.node.check_tx(tx)
        except AbciError as exc:
            return _rpc_error(f"CheckTx failed: {exc}")
        digest = tx_hash(tx)
        if check.code == 0 and self._relays():
            try:
                self.validator.submit(tx)
            except MempoolError as exc:
                return _rpc_error(str(exc))
        return _rpc({
            "code": check.code,
            "data": _b64(check.data) or "",
            "log": check.log,
            "info": check.info,
            "codespace": check.codespace,
            "hash": digest,
        })

    def _relays(self) -> bool:
        """Whether this node's txs reach the validator: not partitioned, and on the chain being built."""
        return not self.node.paused and self.node.chain is self.validator.chain

    async def tx(self, request: web.Request) -> web.Response:
        """The agent's own DeliverTx verdict on a committed tx, or Tendermint's not-found error."""
        digest = _hex_param(request, "hash").upper()
        found = await self.node.wait_for_tx(digest, self.tx_wait)
        if found is None:
            return _rpc_error(f"tx ({digest}) not found")
        return _rpc(_tx_json(digest, found))

    async def net_info(self, _request: web.Request) -> web.Response:
        """The other live nodes as peers (none while this one is partitioned)."""
        peers = [] if self.node.paused else [p for p in self.peers() if p is not self.node and p.live]
        return _rpc({
            "listening": True,
            "listeners": ["Listener(@)"],
            "n_peers": str(len(peers)),
            "peers": [
                {"node_info": {"id": node_id(p.index), "moniker": f"agent{p.index}"},
                 "is_outbound": True, "remote_ip": "127.0.0.1"}
                for p in peers
            ],
        })

    # ------------------------------------------------------------------ com
    async def get_params(self, _request: web.Request) -> web.Response:
        """This node's validator identity and peer id."""
        params = {
            "address": validator_address(self.node.index),
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": _b64(_pub_key(self.node.index))},
            "peer_id": node_id(self.node.index),
        }
        return web.json_response({"params": params, "status": True, "error": None})

    async def post_params(self, request: web.Request) -> web.Response:
        """Accept a genesis/peers update (kept for inspection: one validator needs no peers)."""
        try:
            data = json.loads(await request.read())
            self.tm_params = {"genesis_config": data["genesis_config"], "validators": data["validators"]}
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"status": False, "error": repr(exc)})
        return web.json_response({"status": True, "error": None})

    async def gentle_reset(self, _request: web.Request) -> web.Response:
        """Restart the node on its chain: reconnect, handshake, replay what the app misses."""
        try:
            await self.node.restart()
        except RestartFailed as exc:
            return web.json_response({"message": f"Reset failed: {exc}", "status": False})
        return web.json_response({"message": "Reset successful.", "status": True})

    async def hard_reset(self, request: web.Request) -> web.Response:
        """Wipe the node and restart it on the genesis the agent names (see ``validator`` for which chain)."""
        try:
            query = request.query
            genesis_time = query.get("genesis_time")
            genesis = Genesis(
                chain_id=f"autonolas-{int(query.get('period_count', '0'))}",
                time_ns=parse_time(genesis_time) if genesis_time else self.node.chain.genesis.time_ns,
                initial_height=max(1, int(query.get("initial_height", "1"))),
            )
            chain = self.validator.chain_for_reset(genesis)
            LOG.info("agent %d: hard reset to %s", self.node.index, genesis.chain_id)
            await self.node.restart(chain)
        except (ValueError, RestartFailed) as exc:
            return web.json_response({"message": f"Reset failed: {exc}", "status": False})
        return web.json_response({"message": "Reset successful.", "status": True})

    async def app_hash(self, request: web.Request) -> web.Response:
        """The app hash a block's header carries: the app's state after the previous height."""
        try:
            height = int(request.query.get("height", self.node.committed))
            app_hash = self.node.app_hashes[height - 1]
        except (ValueError, KeyError) as exc:
            return web.json_response({"error": f"Could not get the app hash: no block {exc}"})
        return web.json_response({"app_hash": app_hash.hex().upper()})


def _tx_json(digest: str, found: TxResult) -> Dict[str, Any]:
    result = found.result
    return {
        "hash": digest,
        "height": str(found.height),
        "index": found.index,
        "tx_result": {
            "code": result.code,
            "data": _b64(result.data),
            "log": result.log,
            "info": result.info,
            "gas_wanted": str(result.gas_wanted),
            "gas_used": str(result.gas_used),
            "events": [],
            "codespace": result.codespace,
        },
        "tx": _b64(found.tx),
    }
