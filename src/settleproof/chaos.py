"""Chaos JSON-RPC proxy: an RPC provider that fails, lags and lies on command, in front of a real node.

Each proxy forwards JSON-RPC to its upstream (anvil) and applies one fault at a time:

==========  =====================================================================
fault       what the client sees
==========  =====================================================================
none        the upstream's answers, untouched
down        connection refused (the listening socket is closed until the fault changes)
delay       every answer `seconds` late
hang        no answer at all until the fault changes or the proxy stops
status      HTTP `status` (e.g. 503, 429 with `retry_after`) instead of an answer
lag         a node `blocks` behind: lower head, no logs or blocks above it
fabricate   an extra, well-formed `Transfer` log in every non-empty `eth_getLogs` range
            (to the first receiver asked for, `value` base units, real block hash);
            with `at_block`, only in ranges holding that block, always the same fake
drop        the first log of every `eth_getLogs` answer left out
alter       the first log's value changed (to `value`, default +1)
garbage     200 with a body that is not JSON
truncate    the real answer cut in half
huge        the real answer followed by `size` bytes of whitespace (valid JSON)
limit       `eth_getLogs` over more than `max_range` blocks (or with more than
            `max_results` results) refused with a real provider's error text
            (`style`: alchemy, infura, range, too_wide)
==========  =====================================================================

`methods` restricts a fault to some JSON-RPC methods; `count` to that many
requests. Steer it over HTTP (`POST /_chaos` with `{"fault": "lag", "blocks": 50}`,
`GET /_chaos` for the fault and the traffic counters) on the proxy's port, or on
its control port, which stays up while the proxy is `down`. Tests use
`ChaosServer` (a thread, like `MerchantServer`); scripts run
`python -m settleproof.chaos --upstream URL`. Test tooling only: loopback, never in the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Tuple

import aiohttp
from aiohttp import web

from settleproof.loop_thread import LoopThread

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
FAULTS = ("none", "down", "delay", "hang", "status", "lag", "fabricate", "drop", "alter",
          "garbage", "truncate", "huge", "limit")  # fmt: skip
LIMIT_STYLES = ("alchemy", "infura", "range", "too_wide")
MAX_RECORDED_SPANS = 10_000


@dataclass
class Fault:  # pylint: disable=too-many-instance-attributes
    """One fault and its parameters (unused ones are ignored)."""

    fault: str = "none"
    seconds: float = 0.0
    status: int = 503
    retry_after: Optional[str] = None
    blocks: int = 0
    value: Optional[int] = None
    at_block: Optional[int] = None
    size: int = 1_000_000
    max_range: Optional[int] = None
    max_results: Optional[int] = None
    style: str = "alchemy"
    methods: Optional[List[str]] = None
    count: Optional[int] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Fault":
        """Validate a control request; raises ValueError naming what is wrong."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault parameters {sorted(unknown)}")
        fault = cls(**data)
        if fault.fault not in FAULTS:
            raise ValueError(f"unknown fault {fault.fault!r}; one of {FAULTS}")
        if fault.style not in LIMIT_STYLES:
            raise ValueError(f"unknown limit style {fault.style!r}; one of {LIMIT_STYLES}")
        if fault.fault == "limit" and fault.max_range is None and fault.max_results is None:
            raise ValueError("a limit needs max_range or max_results")
        return fault

    def applies_to(self, method: Optional[str]) -> bool:
        """Whether a request with this method is affected."""
        return self.fault != "none" and (self.methods is None or method in self.methods) and (
            self.count is None or self.count > 0
        )


@dataclass
class Traffic:
    """What went through the proxy."""

    requests: Dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    faulted: int = 0
    get_logs_spans: List[int] = field(default_factory=list)


def limit_error(style: str, first: int, last: int, max_range: int) -> Tuple[int, str, Any]:
    """(code, message, data) of a range refusal, worded as the provider does."""
    if style == "alchemy":
        return -32602, (
            f"Log response size exceeded. You can make eth_getLogs requests with up to a {max_range} "
            "block range and no limit on the response size, or you can request any block range with "
            "a cap of 10K logs in the response. Based on your parameters and the response size limit, "
            f"this block range should work: [{hex(first)}, {hex(first + max_range - 1)}]"
        ), None
    if style == "infura":
        data = {"from": hex(first), "to": hex(first + max_range - 1)}
        return -32005, "query returned more than 10000 results", data
    if style == "range":
        return -32000, f"exceed maximum block range: {max_range}", None
    return -32000, "block range is too wide", None


def fake_transfer(log_filter: Dict[str, Any], block: int, block_hash: str, value: int) -> Dict[str, Any]:
    """A well-formed Transfer log nobody sent, paying the first receiver the filter asks for."""
    topics = log_filter.get("topics") or []
    receivers = topics[2] if len(topics) > 2 and topics[2] else ["0x" + "0" * 24 + "ee" * 20]
    receiver = receivers[0] if isinstance(receivers, list) else receivers
    addresses = log_filter.get("address")
    token = addresses[0] if isinstance(addresses, list) else addresses
    fake_hash = "0x" + hashlib.sha256(f"fabricated:{block}:{receiver}".encode()).hexdigest()
    return {
        "address": token,
        "topics": [TRANSFER_TOPIC, "0x" + "0" * 24 + "fa" * 20, receiver],
        "data": "0x" + f"{value:064x}",
        "blockNumber": hex(block),
        "blockHash": block_hash,
        "transactionHash": fake_hash,
        "transactionIndex": "0x0",
        "logIndex": hex(999),
        "removed": False,
    }


class ChaosProxy:
    """The proxy on the current event loop (async API); see the module docstring."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, control_port: int = 0) -> None:
        """Nothing listens until `start()`."""
        if not host.startswith("127."):
            raise ValueError(f"the chaos proxy binds loopback only, got {host!r}")
        self.upstream, self.host = upstream, host
        self.port, self.control_port = port, control_port
        self.fault = Fault()
        self.traffic = Traffic()
        self._runner: Optional[web.AppRunner] = None
        self._site: Optional[web.SockSite] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._release: Optional[asyncio.Event] = None
        self._ids = 0
        self.on_request: Callable[[], None] = lambda: None  # called after counting each request

    @property
    def url(self) -> str:
        """The provider URL to give to clients."""
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        """Where `POST /_chaos` always answers, even while the proxy is down."""
        return f"http://{self.host}:{self.control_port}"

    async def start(self) -> None:
        """Bind both ports and connect to the upstream."""
        self._release = asyncio.Event()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/_chaos", self._get_control)
        app.router.add_post("/_chaos", self._post_control)
        app.router.add_post("/{path:.*}", self._rpc)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        control = self._bind(self.control_port)
        self.control_port = control.getsockname()[1]
        await web.SockSite(self._runner, control).start()
        await self._listen()

    async def stop(self) -> None:
        """Release hung requests, close both ports and the upstream session."""
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            runner, self._runner, self._site = self._runner, None, None
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def set_fault(self, fault: Fault) -> None:
        """Replace the fault; going down closes the RPC port, coming back reopens it."""
        old, self.fault = self.fault, fault
        if old.fault == "hang" and self._release is not None:
            self._release.set()
            self._release = asyncio.Event()
        if fault.fault == "down" and self._site is not None:
            site, self._site = self._site, None
            await site.stop()
        elif fault.fault != "down" and self._site is None and self._runner is not None:
            await self._listen()

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        return sock

    async def _listen(self) -> None:
        assert self._runner is not None  # nosec B101
        sock = self._bind(self.port)
        self.port = sock.getsockname()[1]
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()

    async def _get_control(self, _request: web.Request) -> web.Response:
        return web.json_response({"fault": asdict(self.fault), "traffic": asdict(self.traffic)})

    async def _post_control(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            fault = Fault.from_json(data)
        except (ValueError, TypeError) as error:
            return web.json_response({"error": str(error)}, status=400)
        await self.set_fault(fault)  # closing the RPC port leaves this connection open
        return web.json_response({"ok": True, "fault": asdict(fault)})

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = _json(body)
        method = call.get("method") if isinstance(call, dict) else "batch" if isinstance(call, list) else "invalid"
        traffic = self.traffic
        traffic.requests[str(method)] = traffic.requests.get(str(method), 0) + 1
        traffic.bytes_in += len(body)
        self.on_request()
        if method == "eth_getLogs":
            self._record_span(call)
        fault = self.fault if self.fault.applies_to(method) else Fault()
        if fault.fault != "none":
            traffic.faulted += 1
            if fault.count is not None:
                fault.count -= 1
        reply = await self._reply(fault, call, body)
        if isinstance(reply, bytes):
            traffic.bytes_out += len(reply)
            reply = web.Response(body=reply, content_type="application/json")
        reply.force_close()  # no kept-alive connection outlives a switch to `down`
        return reply

    async def _reply(self, fault: Fault, call: Any, body: bytes) -> "bytes | web.StreamResponse":
        kind = fault.fault
        if kind == "delay":
            await asyncio.sleep(fault.seconds)  # injected latency, not synchronization
        if kind == "hang" and self._release is not None:
            await self._release.wait()
        if kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return web.Response(status=fault.status, text=f"injected {fault.status}", headers=headers)
        if kind == "garbage":
            return b"\x00\xff<html><body>502 Bad Gateway</body></html>"
        if not isinstance(call, dict):
            return await self._forward(body)
        refusal = await self._limit(fault, call) if kind == "limit" else None
        if refusal is not None:
            return refusal
        reply = await self._forward(body)
        if kind in ("lag", "fabricate", "drop", "alter"):
            reply = await self._rewrite(fault, call, reply)
        if kind == "truncate":
            return reply[: len(reply) // 2]
        if kind == "huge":
            return reply + b" " * fault.size
        return reply

    async def _forward(self, body: bytes) -> bytes:
        assert self._session is not None  # nosec B101
        async with self._session.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            return await response.read()

    async def _upstream(self, method: str, params: List[Any]) -> Any:
        self._ids += 1
        request = {"jsonrpc": "2.0", "id": f"chaos-{self._ids}", "method": method, "params": params}
        return (_json(await self._forward(json.dumps(request).encode())) or {}).get("result")

    async def _limit(self, fault: Fault, call: Dict[str, Any]) -> Optional[bytes]:
        if call.get("method") != "eth_getLogs":
            return None
        log_filter = (call.get("params") or [{}])[0]
        first, last = int(log_filter["fromBlock"], 16), int(log_filter["toBlock"], 16)
        if fault.max_range is not None and last - first + 1 > fault.max_range:
            code, message, data = limit_error(fault.style, first, last, fault.max_range)
            return _error(call, code, message, data)
        if fault.max_results is not None:
            results = await self._upstream("eth_getLogs", [log_filter])
            if isinstance(results, list) and len(results) > fault.max_results:
                return _error(call, -32005, f"query returned more than {fault.max_results} results")
        return None

    async def _rewrite(self, fault: Fault, call: Dict[str, Any], reply: bytes) -> bytes:
        document = _json(reply)
        if not isinstance(document, dict) or "result" not in document:
            return reply
        method, result = call.get("method"), document["result"]
        if fault.fault == "lag":
            head = int(await self._upstream("eth_blockNumber", []), 16) - fault.blocks
            if method == "eth_blockNumber":
                result = hex(max(0, head))
            elif method == "eth_getLogs" and isinstance(result, list):
                result = [log for log in result if int(log["blockNumber"], 16) <= head]
            elif method == "eth_getBlockByNumber" and isinstance(result, dict):
                result = None if int(result["number"], 16) > head else result
        elif method == "eth_getLogs" and isinstance(result, list):
            result = await self._lie(fault, call, result)
        document["result"] = result
        return json.dumps(document).encode()

    async def _lie(self, fault: Fault, call: Dict[str, Any], logs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        if fault.fault == "drop":
            return logs[1:]
        if fault.fault == "alter" and logs:
            old = int(logs[0]["data"], 16)
            value = fault.value if fault.value is not None else old + 1
            return [{**logs[0], "data": "0x" + f"{value:064x}"}, *logs[1:]]
        if fault.fault == "fabricate":
            log_filter = call["params"][0]
            head = int(await self._upstream("eth_blockNumber", []), 16)
            block = min(int(log_filter["toBlock"], 16), head)
            if fault.at_block is not None:  # one fake payment, not a new one per range
                block = fault.at_block if fault.at_block <= block else -1
            if block >= int(log_filter["fromBlock"], 16):
                found = await self._upstream("eth_getBlockByNumber", [hex(block), False])
                value = fault.value if fault.value is not None else 10**24
                return [*logs, fake_transfer(log_filter, block, found["hash"], value)]
        return logs

    def _record_span(self, call: Dict[str, Any]) -> None:
        try:
            log_filter = call["params"][0]
            span = int(log_filter["toBlock"], 16) - int(log_filter["fromBlock"], 16) + 1
        except (KeyError, IndexError, TypeError, ValueError):
            return
        if len(self.traffic.get_logs_spans) < MAX_RECORDED_SPANS:
            self.traffic.get_logs_spans.append(span)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _error(call: Dict[str, Any], code: int, message: str, data: Any = None) -> bytes:
    error: Dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "id": call.get("id"), "error": error}).encode()


class ChaosServer:
    """A `ChaosProxy` on its own thread and loop, for synchronous tests and scripts."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, control_port: int = 0) -> None:
        """Nothing runs until `start()`."""
        self.proxy = ChaosProxy(upstream, host, port, control_port)
        self._thread = LoopThread("chaos")
        self._arrived = threading.Condition()
        self.proxy.on_request = self._notify

    def _notify(self) -> None:
        with self._arrived:
            self._arrived.notify_all()

    def wait_for_requests(self, method: str, count: int, timeout: float) -> None:
        """Block until `count` requests of `method` have arrived (they may still be hanging)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self.proxy.traffic.requests.get(method, 0) >= count, timeout):
                raise TimeoutError(f"{count} {method} requests did not arrive within {timeout}s")

    def start(self) -> "ChaosServer":
        """Start the thread; return once both ports listen."""
        self._thread.start(self.proxy.start)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._thread.stop(self.proxy.stop, timeout=10)

    def _call(self, coroutine: Any) -> Any:
        return self._thread.call(coroutine)

    def set_fault(self, fault: str = "none", **params: Any) -> None:
        """Apply a fault (see the module docstring); `set_fault()` clears it."""
        self._call(self.proxy.set_fault(Fault.from_json({"fault": fault, **params})))

    def clear(self) -> None:
        """Back to an honest provider."""
        self.set_fault("none")

    def traffic(self) -> Dict[str, Any]:
        """Requests per method, bytes each way, faulted requests, eth_getLogs spans."""
        return self._call(_snapshot(self.proxy))

    @property
    def url(self) -> str:
        """The provider URL."""
        return self.proxy.url

    @property
    def control_url(self) -> str:
        """The control URL (up even while the proxy is down)."""
        return self.proxy.control_url

    def __enter__(self) -> "ChaosServer":
        """Start on entering `with`."""
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        """Always stop."""
        self.stop()


async def _snapshot(proxy: ChaosProxy) -> Dict[str, Any]:
    return json.loads(json.dumps(asdict(proxy.traffic)))


async def _serve_forever(upstream: str, host: str, port: int, control_port: int) -> None:
    proxy = ChaosProxy(upstream, host, port, control_port)
    await proxy.start()
    print(f"chaos proxy for {upstream} on {proxy.url} (control {proxy.control_url}/_chaos)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.stop()


def main(argv: Optional[List[str]] = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="JSON-RPC URL to forward to (e.g. anvil)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--control-port", type=int, default=0, help="0 picks a free port (printed)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve_forever(args.upstream, args.host, args.port, args.control_port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
