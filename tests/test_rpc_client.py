"""The `rpc_client` connection against real aiohttp servers on 127.0.0.1.

Hostile answers a provider (or whoever answers for it) can give: a body far
larger than the cap (plain and gzip), a redirect elsewhere, no answer at all
or one that stalls halfway. Each must end as one reply to the skill, without
the agent reading the rest, following the redirect or waiting forever.
"""

import asyncio
import gzip
import json
from typing import AsyncIterator, Awaitable, Callable, Dict, Tuple, cast
from unittest.mock import MagicMock

from aea.configurations.base import ConnectionConfig
from aea.identity.base import Identity
from aea.mail.base import Envelope
from aea.protocols.base import Message
from aea.protocols.dialogue.base import Dialogue
from aiohttp import web

from packages.settleproof.connections.rpc_client.connection import (
    DEFAULT_MAX_BODY_BYTES,
    ERROR_STATUS,
    RpcClientConnection,
)
from packages.valory.protocols.http.dialogues import HttpDialogue, HttpDialogues
from packages.valory.protocols.http.message import HttpMessage


MIB = 1024 * 1024
SKILL = "settleproof/settlement_abci:0.1.0"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """One aiohttp app on a free 127.0.0.1 port, started and stopped in the test's loop."""

    def __init__(self, handler: Handler) -> None:
        """Every path and method goes to `handler`; `hits` counts requests."""
        self.hits = 0
        self.handler = handler
        self.runner: web.AppRunner

    async def _count(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        return await self.handler(request)

    async def __aenter__(self) -> "Server":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._count)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        """The server's base URL."""
        port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"


def connection(**config: object) -> RpcClientConnection:
    """The agent's connection, as the framework builds it from connection.yaml (defaults unless given)."""
    configuration = ConnectionConfig(connection_id=RpcClientConnection.connection_id, **config)
    identity = Identity("agent", address="agent-address", public_key="agent-key")
    return RpcClientConnection(configuration=configuration, data_dir=MagicMock(), identity=identity)


async def exchange(client: RpcClientConnection, url: str, method: str = "POST", body: bytes = b"{}") -> HttpMessage:
    """One request from a skill's dialogue through the connection, and its reply (a valid one in that dialogue)."""

    def as_client(_message: Message, _receiver: str) -> Dialogue.Role:
        return HttpDialogue.Role.CLIENT

    dialogues = HttpDialogues(SKILL, role_from_first_message=as_client)
    message, _ = dialogues.create(
        counterparty=str(client.connection_id), performative=HttpMessage.Performative.REQUEST,
        method=method, url=url, headers="Content-Type: application/json\r\n", version="", body=body,
    )
    await client.send(Envelope(to=message.to, sender=message.sender, message=message))
    reply = await asyncio.wait_for(client.receive(), 60)  # a safety net, not a measurement
    assert reply is not None and reply.to == SKILL
    assert dialogues.update(reply.message) is not None
    return cast(HttpMessage, reply.message)


async def connected(**config: object) -> RpcClientConnection:
    """A connected connection."""
    client = connection(**config)
    await client.connect()
    return client


def test_a_json_rpc_answer_comes_back_whole() -> None:
    """An ordinary answer: status, headers and the whole body, the request as the skill sent it."""
    seen: Dict[str, object] = {}

    async def rpc(request: web.Request) -> web.Response:
        seen["body"] = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": "0x10"})

    async def run() -> HttpMessage:
        async with Server(rpc) as server:
            client = await connected()
            try:
                return await exchange(client, server.url, body=b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}')
            finally:
                await client.disconnect()

    reply = asyncio.run(run())
    assert reply.status_code == 200 and json.loads(reply.body)["result"] == "0x10"
    assert "Content-Type: application/json" in reply.headers
    assert seen["body"] == {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}


def test_a_body_over_the_cap_is_an_error_and_the_rest_is_never_read() -> None:
    """64 MiB streamed in chunks against the default 16 MiB cap: one error reply, and the server is cut off."""
    total = 64 * MIB
    sent = {"bytes": 0}

    async def flood(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: chunked, as a streaming server sends it
        await response.prepare(request)
        chunk = b" " * (64 * 1024)
        try:
            while sent["bytes"] < total:
                await response.write(chunk)
                sent["bytes"] += len(chunk)
        except (ConnectionResetError, ConnectionError):
            pass  # the client hung up: what we want
        return response

    async def run() -> HttpMessage:
        async with Server(flood) as server:
            client = await connected()
            try:
                return await exchange(client, server.url)
            finally:
                await client.disconnect()

    reply = asyncio.run(run())
    assert (reply.status_code, reply.body) == (ERROR_STATUS, f"reply larger than {DEFAULT_MAX_BODY_BYTES} bytes".encode())
    assert sent["bytes"] < total


def test_the_cap_applies_to_the_decoded_body() -> None:
    """A 64 KiB gzip reply that inflates to 64 MiB is refused like a plain one; a body of exactly the cap is kept."""
    bomb = gzip.compress(b"0" * (64 * MIB))

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/bomb":
            return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        return web.Response(body=b"1" * 1000 if request.path == "/exact" else b"1" * 1001)

    async def run() -> Tuple[HttpMessage, HttpMessage, HttpMessage]:
        async with Server(handler) as server:
            small = await connected(max_body_bytes=1000)
            big = await connected()
            try:
                return (
                    await exchange(big, f"{server.url}/bomb"),
                    await exchange(small, f"{server.url}/exact"),
                    await exchange(small, f"{server.url}/over"),
                )
            finally:
                await small.disconnect()
                await big.disconnect()

    bombed, exact, over = asyncio.run(run())
    assert (bombed.status_code, bombed.body) == (ERROR_STATUS, f"reply larger than {DEFAULT_MAX_BODY_BYTES} bytes".encode())
    assert exact.status_code == 200 and exact.body == b"1" * 1000
    assert (over.status_code, over.body) == (ERROR_STATUS, b"reply larger than 1000 bytes")


def test_a_redirect_is_returned_as_it_is_and_never_followed() -> None:
    """302 (GET, as for the invoice list) and 307 (POST, as for JSON-RPC) to another local server: never asked."""
    async def elsewhere(_request: web.Request) -> web.Response:
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": "0xdead"})

    async def run() -> Tuple[HttpMessage, HttpMessage, int]:
        async with Server(elsewhere) as target:

            async def redirect(request: web.Request) -> web.Response:
                status = 302 if request.method == "GET" else 307
                return web.Response(status=status, headers={"Location": f"{target.url}/stolen"})

            async with Server(redirect) as server:
                client = await connected()
                try:
                    get = await exchange(client, f"{server.url}/invoices", method="GET", body=b"")
                    post = await exchange(client, server.url)
                finally:
                    await client.disconnect()
            return get, post, target.hits

    get, post, target_hits = asyncio.run(run())
    assert get.status_code == 302 and post.status_code == 307
    assert b"0xdead" not in get.body + post.body
    assert target_hits == 0


def test_no_answer_and_a_stalled_answer_end_after_the_timeout() -> None:
    """A server that never answers, and one that stops halfway through its body: both an error reply."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if request.path == "/halfway":
            await response.prepare(request)
            await response.write(b'{"jsonrpc":"2.0","id":1,"result":[')
        await release.wait()  # until the test ends
        return response

    async def run() -> Tuple[HttpMessage, HttpMessage, HttpMessage]:
        async with Server(hang) as server:
            client = await connected(timeout=0.5)
            try:
                silent = await exchange(client, f"{server.url}/silent")
                halfway = await exchange(client, f"{server.url}/halfway")
                refused = await exchange(client, "http://127.0.0.1:9/")
                return silent, halfway, refused
            finally:
                release.set()
                await client.disconnect()

    silent, halfway, refused = asyncio.run(run())
    assert (silent.status_code, silent.body) == (ERROR_STATUS, b"timed out after 0.5s")
    assert (halfway.status_code, halfway.body) == (ERROR_STATUS, b"timed out after 0.5s")
    assert refused.status_code == ERROR_STATUS and b"Cannot connect" in refused.body
    assert b"\n" not in silent.body + halfway.body + refused.body
