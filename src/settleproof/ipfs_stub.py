"""Stand-in IPFS node so agents using the framework's ``valory/ipfs`` connection can start offline.

What the connection does (open-autonomy 0.21.30 / open-aea-cli-ipfs 2.2.10):

* ``IpfsConnection.__init__`` builds ``aea_cli_ipfs.ipfs_utils.IPFSTool(ipfs_domain)``
  (``ipfs_domain`` null falls back to ``$OPEN_AEA_IPFS_ADDR``, then the public
  registry). The tool classifies the host with ``is_remote_addr``: ``localhost``,
  ``127.0.0.1`` and ``0.0.0.0`` are *local*, and for a local node
  ``IPFSDaemon.__init__`` runs ``_check_ipfs()``, which demands an ``ipfs``
  binary of version 0.6.0 on PATH (``RuntimeError("Please install IPFS first!")``)
  already at construction. Any other loopback address, e.g. ``127.0.0.2``,
  counts as remote and skips that check, hence our default bind address.
* ``IpfsConnection.connect()`` calls ``IPFSTool.check_ipfs_node_running()``,
  i.e. ``IPFSHTTPClient.id()``: one ``POST <node>/api/v0/id`` with an empty body
  (urllib, 120 s timeout). Any non-200 status, a non-JSON body or a socket
  error raises ``NodeError`` and the agent does not start; a 200 with any JSON
  body passes (the fields are not read).

The stub answers that probe with a kubo-shaped identity document and every
other ``/api/v0/*`` call with kubo's error shape (``{"Message", "Code",
"Type"}``, status 500), so an unexpected use fails loudly with a clear message.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Dict, List, Optional

from aiohttp import web

from settleproof.loop_thread import LoopThread

#: Kubo-like ``/api/v0/id`` reply; only "200 + JSON" matters to the client.
ID_RESPONSE: Dict[str, Any] = {
    "ID": "12D3KooWSettleProofIpfsStubxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "PublicKey": "",
    "Addresses": [],
    "AgentVersion": "settleproof-ipfs-stub/0.1.0",
    "ProtocolVersion": "ipfs/0.1.0",
    "Protocols": [],
}
DEFAULT_HOST = "127.0.0.2"


class IpfsStub:
    """A thread-hosted aiohttp server answering the IPFS node probe.

    ``requests`` lists ``(method, path)`` of every request received, so tests
    can assert the probe really reached the stub.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0) -> None:
        """Nothing listens until ``start()``."""
        self.host, self.port = host, port
        self.requests: List[tuple] = []
        self._lock = threading.Lock()
        self._thread = LoopThread("ipfs-stub")
        self._runner: Optional[web.AppRunner] = None

    # ------------------------------------------------------------------ HTTP
    async def _handle(self, request: web.Request) -> web.Response:
        """Answer ``POST /api/v0/id``; refuse everything else the way kubo does."""
        with self._lock:
            self.requests.append((request.method, request.path))
        if request.path == "/api/v0/id":
            if request.method != "POST":  # kubo only accepts POST on the RPC API
                return web.Response(status=405, text="405 - Method Not Allowed")
            return web.json_response(ID_RESPONSE)
        return web.json_response(
            {"Message": f"settleproof ipfs stub: {request.path} not implemented", "Code": 0, "Type": "error"},
            status=500,
        )

    async def _start(self) -> None:
        """Bind (port 0 = free port, no race) and serve on this thread's loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _stop(self) -> None:
        """Close the listener."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "IpfsStub":
        """Serve on a background thread; return once listening."""
        self._thread.start(self._start, timeout=10)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._thread.stop(self._stop, timeout=10)

    def __enter__(self) -> "IpfsStub":
        """Start on entering ``with``."""
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        """Always stop."""
        self.stop()

    @property
    def url(self) -> str:
        """HTTP base URL, e.g. ``http://127.0.0.2:40123``."""
        return f"http://{self.host}:{self.port}"

    @property
    def multiaddr(self) -> str:
        """Value for the connection's ``ipfs_domain`` (or ``OPEN_AEA_IPFS_ADDR``)."""
        return f"/ip4/{self.host}/tcp/{self.port}/http"
