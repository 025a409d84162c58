"""Webhook client: sends the skill's HTTP requests to the merchant and never follows redirects.

Why not `valory/http_client`: its aiohttp session follows redirects, and
the README says webhooks do not (a signed event must reach the configured
endpoint or nobody; a 3xx is reported as it is and retried later). It also
opens a session per request, where webhooks all go to one host and one
pooled session saves a connection set-up per event.

Speaks `valory/http` like `http_client`: each REQUEST gets one RESPONSE with
the status, the headers (`Name: value` lines) and at most `MAX_BODY` bytes of
body; when no reply arrives (timeout, refused connection, ...) the status is
`ERROR_STATUS` and the body is a one-line reason.
"""

import asyncio
from dataclasses import dataclass
from typing import Any, Dict, Optional, Set, cast

import aiohttp

from aea.connections.base import Connection, ConnectionStates
from aea.mail.base import Envelope
from aea.protocols.base import Message
from aea.protocols.dialogue.base import Dialogue

from packages.settleproof.connections.webhook_client import PUBLIC_ID
from packages.valory.protocols.http.dialogues import HttpDialogue
from packages.valory.protocols.http.dialogues import HttpDialogues as BaseHttpDialogues
from packages.valory.protocols.http.message import HttpMessage


#: Status of a response that never came, as `valory/http_client` reports it.
ERROR_STATUS = 600
#: We need the status and `Retry-After`; a large reply body is not kept.
MAX_BODY = 1024
DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_CONNECTIONS = 16


@dataclass(frozen=True)
class Reply:
    """What one request gave: the merchant's answer, or `ERROR_STATUS` with the reason as body."""

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


async def request(  # pylint: disable=too-many-arguments
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes,
    headers: Dict[str, str],
    timeout: float,
) -> Reply:
    """One request with redirects not followed; failures become `ERROR_STATUS` with a reason."""
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            content = await response.content.read(MAX_BODY)
            lines = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
            return Reply(response.status, lines, content)
    except asyncio.TimeoutError:
        return Reply(ERROR_STATUS, body=f"timed out after {timeout:g}s".encode())
    except (aiohttp.ClientError, OSError, ValueError) as error:
        reason = f"{type(error).__name__}: {error}".replace("\n", " ")
        return Reply(ERROR_STATUS, body=reason.encode())


class WebhookDialogues(BaseHttpDialogues):
    """The connection answers requests, so it plays the server in every dialogue."""

    def __init__(self) -> None:
        """Dialogues kept on behalf of this connection."""

        def role(_message: Message, _receiver: str) -> Dialogue.Role:
            return HttpDialogue.Role.SERVER

        super().__init__(self_address=str(PUBLIC_ID), role_from_first_message=role)


class WebhookClientConnection(Connection):
    """One pooled aiohttp session; each request runs as its own task, replies go to the inbox."""

    connection_id = PUBLIC_ID

    def __init__(self, **kwargs: Any) -> None:
        """Read `timeout` (seconds per request) and `max_connections` from the configuration."""
        super().__init__(**kwargs)
        config = self.configuration.config
        self.timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        self.max_connections = int(config.get("max_connections", DEFAULT_MAX_CONNECTIONS))
        self.dialogues = WebhookDialogues()
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
        reply = await request(
            self._session,
            message.method,
            message.url,
            message.body,
            parse_headers(message.headers),
            self.timeout,
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
