"""P2P links between the devnet's Tendermint nodes, which tests can cut and heal: a network partition on loopback.

Node ``i`` reaches node ``j`` only through link ``(i, j)``: a TCP forwarder on
its own port in front of ``j``'s P2P port, which ``i`` has as ``j``'s address
in its ``persistent_peers``. Cutting node ``i`` closes every open connection
on the links to and from ``i`` and refuses new ones, so ``i`` is cut off from
all its peers while its RPC, its agent and the others' links work on; healing
lets Tendermint's own redial (every 5 s for persistent peers) reconnect it.
The bytes are forwarded untouched: consensus is the nodes' own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Dict, List, Set, Tuple

from settleproof.loop_thread import LoopThread
from settleproof.ports import free_port


HOST = "127.0.0.1"
CHUNK = 1 << 16
LOG = logging.getLogger("settleproof.devnet")

Link = Tuple[int, int]


class PeerLinks:
    """Every directed link ``(i, j)`` of a network of ``count`` nodes; ``cut(i)`` and ``heal(i)``."""

    def __init__(self, count: int) -> None:
        """Draw a port per link; nothing listens until ``start()``."""
        self.count = count
        self.ports: Dict[Link, int] = {
            (i, j): free_port() for i in range(count) for j in range(count) if i != j
        }
        self.targets: Dict[int, int] = {}
        self.isolated: Set[int] = set()
        self._open: Dict[Link, Set[asyncio.StreamWriter]] = {link: set() for link in self.ports}
        self._servers: List[asyncio.AbstractServer] = []
        self._thread = LoopThread("devnet-links")

    def port(self, source: int, target: int) -> int:
        """Where node ``source`` dials node ``target``."""
        return self.ports[(source, target)]

    def start(self, p2p_ports: Dict[int, int]) -> "PeerLinks":
        """Listen on every link, forwarding to the nodes' P2P ports."""
        self.targets = dict(p2p_ports)
        self._thread.start(self._listen)
        return self

    async def _listen(self) -> None:
        for link, port in self.ports.items():
            server = await asyncio.start_server(
                lambda reader, writer, link=link: self._forward(link, reader, writer), HOST, port
            )
            self._servers.append(server)

    def _is_cut(self, link: Link) -> bool:
        return link[0] in self.isolated or link[1] in self.isolated

    async def _forward(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._is_cut(link):
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.targets[link[1]])
        except OSError:
            writer.close()
            return
        if self._is_cut(link):  # cut while we were connecting
            writer.transport.abort()
            upstream_writer.transport.abort()
            return
        self._open[link].update((writer, upstream_writer))
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            self._open[link].difference_update((writer, upstream_writer))
            for end in (writer, upstream_writer):
                end.close()

    def cut(self, node: int) -> None:
        """Cut ``node`` off from every peer: open connections close, new ones are refused."""
        self._thread.call(self._set(node, True))
        LOG.info("node %d cut off from its peers", node)

    def heal(self, node: int) -> None:
        """Let ``node`` reach its peers again."""
        self._thread.call(self._set(node, False))
        LOG.info("node %d reconnected to its peers", node)

    async def _set(self, node: int, isolated: bool) -> None:
        if isolated:
            self.isolated.add(node)
            for link, writers in self._open.items():
                if self._is_cut(link):
                    for writer in list(writers):
                        writer.transport.abort()
        else:
            self.isolated.discard(node)

    def stop(self) -> None:
        """Close every link; safe to call twice."""
        self._thread.stop(self._close)

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for writers in self._open.values():
            for writer in list(writers):
                writer.transport.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side closes."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
