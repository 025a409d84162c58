"""The ABCI socket client the devnet uses to drive one agent, as Tendermint's socket client does.

The agent's abci connection (``TcpServerChannel``) listens; we connect. Messages
are the framework's own protobuf ``Request``/``Response`` with its varint framing
(imported from the installed ``valory/abci`` connection, not copied), so the
bytes on the wire are what a real Tendermint node sends. One request is in
flight at a time on one socket: the channel answers on the socket a request came
from, and with a single outstanding request no response can be mismatched.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from packages.valory.connections.abci.connection import (  # type: ignore[import-untyped]
    DecodeVarintError,
    ShortBufferLengthError,
    TooLargeVarint,
    VarintMessageReader,
    _TendermintABCISerializer,
)
from packages.valory.connections.abci.tendermint.abci.types_pb2 import (  # type: ignore[import-untyped]
    Request,
    Response,
)


class AbciError(ConnectionError):
    """The agent closed the socket, answered with an exception, or did not answer in time."""


class AbciClient:
    """One TCP connection to an agent's ABCI server; ``request`` sends one message and awaits its answer."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        """Nothing connects until ``connect()``; ``timeout`` bounds every answer."""
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: Optional[VarintMessageReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """Whether the socket is open."""
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        """Open the socket (raises ``OSError`` while the agent is not listening)."""
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._reader = VarintMessageReader(reader)

    async def close(self) -> None:
        """Close the socket; the agent sees EOF, as when a Tendermint node stops."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass

    async def request(self, **value: object) -> Response:
        """Send ``Request(**value)``, e.g. ``request(info=RequestInfo())``; return the matching ``Response``."""
        message = Request(**value)
        kind = message.WhichOneof("value")
        async with self._lock:
            if self._writer is None or self._reader is None:
                raise AbciError(f"{kind}: not connected")
            try:
                self._writer.write(_TendermintABCISerializer.write_message(message))
                await self._writer.drain()
                raw = await asyncio.wait_for(self._reader.read_next_message(), self.timeout)
            except (OSError, EOFError, DecodeVarintError, ShortBufferLengthError, TooLargeVarint) as exc:
                await self.close()
                raise AbciError(f"{kind}: connection lost ({exc!r})") from exc
            except asyncio.TimeoutError as exc:
                await self.close()
                raise AbciError(f"{kind}: no answer within {self.timeout}s") from exc
        response = Response()
        response.ParseFromString(raw)
        answered = response.WhichOneof("value")
        if answered == "exception":
            raise AbciError(f"{kind}: agent raised {response.exception.error}")
        if answered != kind:
            await self.close()
            raise AbciError(f"{kind}: got a {answered} answer")
        return response
