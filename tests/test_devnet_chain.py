"""The devnet's chain side against a scripted ABCI app: fast, in-process, no agent.

The fake app speaks the framework's wire format (its protobuf types and
varint framing) and keeps only what the devnet relies on: its height, the
genesis it was initialised with, and the txs it was given.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any, Iterator, List, Optional

import pytest

from packages.valory.connections.abci.connection import (  # type: ignore[import-untyped]
    VarintMessageReader,
    _TendermintABCISerializer,
)
from packages.valory.connections.abci.tendermint.abci.types_pb2 import (  # type: ignore[import-untyped]
    Request,
    Response,
    ResponseBeginBlock,
    ResponseCheckTx,
    ResponseCommit,
    ResponseDeliverTx,
    ResponseEndBlock,
    ResponseInfo,
    ResponseInitChain,
)
from settleproof.devnet.chain import Genesis, format_time, parse_time
from settleproof.devnet.server import DevChain
from settleproof.devnet.validator import Validator


class FakeApp:
    """A minimal ABCI app on a thread: counts heights, accepts txs whose first byte is not 0."""

    def __init__(self) -> None:
        """Listen on a free loopback port."""
        self.height = 0
        self.chain_ids: List[str] = []
        self.txs: List[bytes] = []
        self._writers: List[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        messages = VarintMessageReader(reader)
        try:
            while True:
                request = Request()
                request.ParseFromString(await messages.read_next_message())
                writer.write(_TendermintABCISerializer.write_message(self._answer(request)))
                await writer.drain()
        except (EOFError, ConnectionError):
            writer.close()

    def _answer(self, request: Request) -> Response:
        kind = request.WhichOneof("value")
        if kind == "info":
            return Response(info=ResponseInfo(last_block_height=self.height))
        if kind == "init_chain":
            self.chain_ids.append(request.init_chain.chain_id)
            self.height = request.init_chain.initial_height - 1
            return Response(init_chain=ResponseInitChain(app_hash=b"genesis"))
        if kind == "check_tx":
            return Response(check_tx=ResponseCheckTx(code=0 if request.check_tx.tx[:1] != b"\0" else 1,
                                                     info="fake verdict"))
        if kind == "deliver_tx":
            self.txs.append(request.deliver_tx.tx)
            return Response(deliver_tx=ResponseDeliverTx(code=7, log="fake log", info="fake info"))
        if kind == "begin_block":
            assert request.begin_block.header.height == self.height + 1
            return Response(begin_block=ResponseBeginBlock())
        if kind == "end_block":
            return Response(end_block=ResponseEndBlock())
        self.height += 1
        return Response(commit=ResponseCommit(data=self.height.to_bytes(8, "big")))

    def crash(self) -> None:
        """Drop every connection and forget all state, as a restarted process would."""

        def drop() -> None:
            self.height = 0
            for writer in self._writers:
                writer.close()
            self._writers.clear()

        self._loop.call_soon_threadsafe(drop)

    def stop(self) -> None:
        """Close the server and the loop."""
        self.crash()
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def devchain() -> Iterator[tuple]:
    """A DevChain at 0.05 s blocks serving one fake app."""
    app = FakeApp()
    chain = DevChain([app.port], block_interval=0.05).start()
    try:
        yield chain, app
    finally:
        chain.stop()
        app.stop()


def get(url: str) -> Any:
    """GET JSON, also from an error status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # nosec: loopback
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def test_times_round_trip() -> None:
    """Genesis times as the framework sends them (microseconds) and as Tendermint shows them (nanoseconds)."""
    assert format_time(parse_time("2024-01-02T03:04:05.123456Z")) == "2024-01-02T03:04:05.123456000Z"
    assert parse_time("2024-01-02T03:04:05Z") == parse_time("2024-01-02T03:04:05.000000000Z")
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_hard_reset_chain_choice() -> None:
    """Join the current chain, move to a later one, rejoin an archived one, isolate an unknown older one."""
    validator = Validator(0.5, b"\1" * 20)
    first = validator.chain
    validator.submit(b"pending")
    one = Genesis("autonolas-1", 10)
    moved = validator.chain_for_reset(one)
    assert moved is validator.chain and moved is not first and validator.history == [first, moved]
    assert validator.chain_for_reset(Genesis("autonolas-1", 10)) is moved
    validator.produce()
    assert moved.block(1).txs == ()  # the old chain's mempool did not move along
    later = validator.chain_for_reset(Genesis("autonolas-3", 20))
    assert validator.chain_for_reset(one) is moved and validator.chain is later
    orphan = validator.chain_for_reset(Genesis("autonolas-2", 99))
    assert orphan not in validator.history


def wait(chain: DevChain, app: FakeApp, height: int) -> None:
    """Until the app committed ``height`` of the validator's current chain."""
    chain.wait_committed(0, height, timeout=10)
    assert app.height >= height


def test_blocks_txs_and_restarts(devchain: tuple) -> None:
    """CheckTx gates the mempool, /tx reports the app's verdict, a crashed app is replayed, a paused one waits."""
    chain, app = devchain
    rpc, com = chain.rpc_url(0), chain.com_url(0)
    wait(chain, app, 3)

    assert get(f"{rpc}/broadcast_tx_sync?tx=0x00ff")["result"]["code"] == 1  # refused by CheckTx: never in a block
    accepted = get(f"{rpc}/broadcast_tx_sync?tx=0x01ff")["result"]
    assert accepted["code"] == 0
    found = get(f"{rpc}/tx?hash=0x{accepted['hash']}")["result"]
    assert found["tx_result"]["code"] == 7 and found["tx_result"]["info"] == "fake info"
    assert app.txs == [b"\x01\xff"]

    head = chain.head()
    app.crash()  # a restarted app: InitChain again and every block again
    wait(chain, app, head + 1)
    wait(chain, app, chain.head())  # replay done, following live
    assert app.chain_ids == ["settleproof-devnet", "settleproof-devnet"]
    assert app.txs.count(b"\x01\xff") == 2

    chain.pause(0)
    chain.wait_for_head(chain.head() + 3, timeout=5)
    frozen = app.height
    chain.wait_for_head(chain.head() + 2, timeout=5)
    assert app.height == frozen
    assert int(get(f"{rpc}/status")["result"]["sync_info"]["latest_block_height"]) == frozen
    chain.resume(0)
    wait(chain, app, chain.head())

    app.height = 0  # as the agent empties its local blockchain before asking
    reset = get(f"{com}/hard_reset?genesis_time=2030-01-01T00:00:00.000000Z&initial_height=0&period_count=4")
    assert reset == {"message": "Reset successful.", "status": True}
    assert app.chain_ids[-1] == "autonolas-4" and chain.chain_id() == "autonolas-4"
    wait(chain, app, 2)
    assert get(f"{com}/app_hash?height=2")["app_hash"] == (1).to_bytes(8, "big").hex().upper()
    assert get(f"{com}/gentle_reset")["status"] is True


def test_status_before_the_app_listens() -> None:
    """Until its app is up, a node reports the chain it holds, so a fresh app does not think it is in sync."""
    chain = DevChain([1], block_interval=0.05).start()  # nothing listens on port 1
    try:
        chain.wait_for_head(3, timeout=5)
        status: Optional[dict] = get(f"{chain.rpc_url(0)}/status")
        assert status is not None and int(status["result"]["sync_info"]["latest_block_height"]) >= 3
        assert get(f"{chain.rpc_url(0)}/net_info")["result"]["n_peers"] == "0"
    finally:
        chain.stop()
