"""RPC client: the skill's reads (JSON-RPC providers, the merchant's invoice list), size-capped and never redirected.

Why not `valory/http_client`: it reads a whole body into memory before the skill
can look at its size, so one provider answering gigabytes takes the agent's
memory with it, and it follows redirects, so whoever answers for a provider can
send the agent's requests elsewhere. Why not `webhook_client`: a webhook needs
the status and at most the first KiB of the body, which it cuts silently; here
the body is the answer, and a cut one must never be parsed. An agent runs one
instance of each connection and a `valory/http` request has no field for a
per-request cap, so the two policies are two small connections.

Speaks `valory/http` like `http_client`: each REQUEST gets one RESPONSE with the
status, the headers (`Name: value` lines) and the body, read as a stream and
kept only up to `max_body_bytes`. A 3xx comes back as it is, never followed (for
JSON-RPC and the invoice list it is an error like any other non-2xx). When no
usable reply arrives (timeout, refused connection, a body over the cap) the
status is `ERROR_STATUS` and the body a one-line reason.
"""

import asyncio
from dataclasses import dataclass
from typing import Any, Dict, Optional, Set, cast

import aiohttp

from aea.connections.base import Connection, ConnectionStates
from aea.mail.base import Envelope
from aea.protocols.base import Message
from aea.protocols.dialogue.base import Dialogue

from packages.settleproof.connections.rpc_client import PUBLIC_ID
from packages.valory.protocols.http.dialogues import HttpDialogue
from packages.valory.protocols.http.dialogues import HttpDialogues as BaseHttpDialogues
from packages.valory.protocols.http.message import HttpMessage


#: Status of a response that never came, as `valory/http_client` reports it.
ERROR_STATUS = 600
#: The skill refuses larger JSON-RPC replies anyway (`ExchangeConfig.max_reply_bytes`).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: The skill's `rpc_timeout_seconds`: a request the skill gave up on does not linger.
DEFAULT_TIMEOUT = 10.0
#: One batch of the RPC reader sends at most 64 requests (`ExchangeConfig.max_batch`).
DEFAULT_MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class Reply:
    """What one request gave: the server's answer, or `ERROR_STATUS` with the reason as body."""

    status: int
    headers: str = ""
    body: bytes = b""


def parse_headers(text: str) -> Dict[str, str]:
    """The http protocol's `Name: value` lines as a dict."""
    headers = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    return headers


async def fetch(  # pylint: disable=too-many-arguments
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes,
    headers: Dict[str, str],
    timeout: float,
    max_body: int,
) -> Reply:
    """One request, redirects not followed, the body read until it ends or passes `max_body` bytes.

    `timeout` bounds everything, from connecting to the last byte of the body, so a
    server that trickles its answer is cut off like one that never answers. The cap
    applies to the body as decoded (a small gzip reply cannot grow past it).
    """
    try:
        async with session.request(
            method,
            url,
            data=body or None,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            content = bytearray()
            async for chunk in response.content.iter_any():
                content += chunk
                if len(content) > max_body:
                    response.close()  # drop the connection: the rest is never read
                    return Reply(ERROR_STATUS, body=f"reply larger than {max_body} bytes".encode())
            lines = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
            return Reply(response.status, lines, bytes(content))
    except asyncio.TimeoutError:
        return Reply(ERROR_STATUS, body=f"timed out after {timeout:g}s".encode())
    except (aiohttp.ClientError, OSError, ValueError) as error:
        reason = f"{type(error).__name__}: {error}".replace("\n", " ")
        return Reply(ERROR_STATUS, body=reason.encode())


class RpcDialogues(BaseHttpDialogues):
    """The connection answers requests, so it plays the server in every dialogue."""

    def __init__(self) -> None:
        """Dialogues kept on behalf of this connection."""

        def role(_message: Message, _receiver: str) -> Dialogue.Role:
            return HttpDialogue.Role.SERVER

        super().__init__(self_address=str(PUBLIC_ID), role_from_first_message=role)


class RpcClientConnection(Connection):
    """One pooled aiohttp session; each request runs as its own task, replies go to the inbox."""

    connection_id = PUBLIC_ID

    def __init__(self, **kwargs: Any) -> None:
        """Read `timeout` (seconds per request), `max_body_bytes` and `max_connections`."""
        super().__init__(**kwargs)
        config = self.configuration.config
        self.timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        self.max_body = int(config.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES))
        self.max_connections = int(config.get("max_connections", DEFAULT_MAX_CONNECTIONS))
        self.dialogues = RpcDialogues()
        self._session: Optional[aiohttp.ClientSession] = None
        self._inbox: Optional[asyncio.Queue] = None
        self._tasks: Set[asyncio.Task] = set()

    async def connect(self) -> None:
        """Open the session."""
        if self.is_connected:  # pragma: no cover
            return
        with self._connect_context():
            self._inbox = asyncio.Queue()
            connector = aiohttp.TCPConnector(limit=self.max_connections)
            self._session = aiohttp.ClientSession(connector=connector)

    async def disconnect(self) -> None:
        """Cancel what is in flight and close the session."""
        if self.is_disconnected:  # pragma: no cover
            return
        self.state = ConnectionStates.disconnecting
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._session = None
        self.state = ConnectionStates.disconnected

    async def send(self, envelope: Envelope) -> None:
        """Start the request in the background; its reply arrives through `receive`."""
        self._ensure_connected()
        task = asyncio.ensure_future(self._handle(envelope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, envelope: Envelope) -> None:
        message = cast(HttpMessage, envelope.message)
        dialogue = self.dialogues.update(message)
        if dialogue is None or message.performative != HttpMessage.Performative.REQUEST:
            self.logger.warning(f"dropped an http message that is not a new request: {message}")
            return
        assert self._session is not None and self._inbox is not None  # nosec: connected
        reply = await fetch(
            self._session,
            message.method,
            message.url,
            message.body,
            parse_headers(message.headers),
            self.timeout,
            self.max_body,
        )
        response = dialogue.reply(
            performative=HttpMessage.Performative.RESPONSE,
            target_message=message,
            version="",
            status_code=reply.status,
            status_text="",
            headers=reply.headers,
            body=reply.body,
        )
        await self._inbox.put(Envelope(to=response.to, sender=response.sender, message=response))

    async def receive(self, *args: Any, **kwargs: Any) -> Optional[Envelope]:
        """The next reply."""
        self._ensure_connected()
        assert self._inbox is not None  # nosec: connected
        try:
            return await self._inbox.get()
        except asyncio.CancelledError:  # pragma: no cover
            return None
