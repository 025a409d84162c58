"""What every settlement behaviour shares: typed access to state and parallel HTTP requests.

The reads (JSON-RPC providers, the merchant's invoice list) go through our
`rpc_client` connection: it reads each body as a stream up to a cap, within a
timeout, and never follows a redirect. The framework's `http_client` (which the
framework keeps for Tendermint) would read any body whole and follow redirects.
"""

import logging
import time
from abc import ABC
from dataclasses import dataclass, field
from typing import Dict, Generator, List, Optional, Sequence, Tuple, cast

from packages.settleproof.connections.rpc_client import PUBLIC_ID as RPC_CLIENT_ID
from packages.settleproof.skills.settlement_abci.models import Params, SharedState
from packages.settleproof.skills.settlement_abci.rounds import SynchronizedData
from packages.valory.protocols.http import HttpMessage
from packages.valory.skills.abstract_round_abci.behaviour_utils import TimeoutException
from packages.valory.skills.abstract_round_abci.behaviours import BaseBehaviour
from packages.valory.skills.abstract_round_abci.dialogues import HttpDialogue, HttpDialogues
from packages.valory.skills.abstract_round_abci.models import Requests


#: Attributes of every log record: a field of that name would clash, so it gets a trailing "_".
RESERVED_LOG_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

RPC_CLIENT = str(RPC_CLIENT_ID)
# The rpc_client connection reports its own failures (refused, timed out, too large) with this status.
CONNECTION_ERROR_STATUS = 600


@dataclass(frozen=True)
class HttpRequest:
    """One request of a parallel batch."""

    method: str
    url: str
    body: bytes = b""
    headers: Optional[Dict[str, str]] = None


@dataclass(frozen=True)
class HttpReply:
    """A reply, or `status == 0` with an error when none arrived in time.

    `elapsed_ms` runs from sending the request to its reply (or to giving up on it).
    """

    status: int
    body: bytes = b""
    headers: str = ""
    error: str = ""
    elapsed_ms: float = field(default=0.0, compare=False)

    @property
    def ok(self) -> bool:
        """A 2xx reply."""
        return 200 <= self.status < 300


class SettlementBaseBehaviour(BaseBehaviour, ABC):
    """Base of the settlement behaviours."""

    @property
    def synchronized_data(self) -> SynchronizedData:
        """The agreed state, typed."""
        return cast(SynchronizedData, cast(SharedState, self.context.state).synchronized_data)

    @property
    def params(self) -> Params:
        """The skill's parameters, typed."""
        return cast(Params, self.context.params)

    def log(self, level: str, message: str, **fields: object) -> None:
        """One structured log line: `message`, plus round, period, agent and `fields` as keys.

        The agent's JSON formatter (aea-config `logging_config`) writes the keys, so a
        payment's trail is one query for its `tx_hash`. The line skips the framework's
        adapter, whose "[agent name] " prefix would only repeat `agent`.
        """
        context = {
            "round": self.matching_round.auto_round_id(),
            "period": self.synchronized_data.period_count,
            "agent": self.context.agent_address,
            **fields,
        }
        extra = {f"{key}_" if key in RESERVED_LOG_KEYS else key: value for key, value in context.items()}
        logger = getattr(self.context.logger, "logger", self.context.logger)
        logger.log(logging.getLevelName(level.upper()), message, extra=extra)

    def http_parallel(
        self, requests: Sequence[HttpRequest], timeout: float
    ) -> Generator[None, None, List[HttpReply]]:
        """Send all requests at once through the rpc_client connection; wait at most `timeout`.

        The framework's `get_http_response` waits for one reply at a time; here
        every request gets its own callback, so a slow provider does not delay
        the others, and a missing reply becomes an error after `timeout`.
        """
        replies: Dict[int, Tuple[HttpMessage, float]] = {}
        callbacks = cast(Requests, self.context.requests).request_id_to_callback
        sent_at = time.monotonic()
        for position, request in enumerate(requests):
            message, dialogue = self._rpc_client_request(request)
            nonce = self._get_request_nonce_from_dialogue(dialogue)
            callbacks[nonce] = self._store_reply(replies, position)
            self.context.outbox.put_message(message=message)
        try:
            yield from self.wait_for_condition(lambda: len(replies) == len(requests), timeout)
        except TimeoutException:
            pass
        gave_up_at = time.monotonic()
        return [self._reply(replies.get(i), sent_at, gave_up_at) for i in range(len(requests))]

    def _rpc_client_request(self, request: HttpRequest) -> Tuple[HttpMessage, HttpDialogue]:
        """The request as a message to rpc_client."""
        return self.http_request_to(RPC_CLIENT, request)

    def http_request_to(self, connection: str, request: HttpRequest) -> Tuple[HttpMessage, HttpDialogue]:
        """The request as a `valory/http` message to one of our connections (the framework's builder
        only addresses http_client)."""
        headers = "".join(f"{key}: {value}\r\n" for key, value in (request.headers or {}).items())
        dialogues = cast(HttpDialogues, self.context.http_dialogues)
        message, dialogue = dialogues.create(
            counterparty=connection,
            performative=HttpMessage.Performative.REQUEST,
            method=request.method,
            url=request.url,
            headers=headers,
            version="",
            body=request.body,
        )
        return cast(HttpMessage, message), cast(HttpDialogue, dialogue)

    @staticmethod
    def _store_reply(replies: Dict[int, Tuple[HttpMessage, float]], position: int):  # type: ignore
        def callback(message: HttpMessage, _current_behaviour: BaseBehaviour) -> None:
            replies[position] = (message, time.monotonic())

        return callback

    @staticmethod
    def _reply(
        received: Optional[Tuple[HttpMessage, float]], sent_at: float, gave_up_at: float
    ) -> HttpReply:
        if received is None:
            return HttpReply(0, error="timed out", elapsed_ms=(gave_up_at - sent_at) * 1000)
        message, at = received
        elapsed_ms = (at - sent_at) * 1000
        if message.status_code >= CONNECTION_ERROR_STATUS:
            # a one-line reason (a framework connection would send a traceback: its last line names the error)
            lines = message.body.decode(errors="replace").strip().splitlines() or [""]
            return HttpReply(0, error=lines[-1].strip()[-200:], elapsed_ms=elapsed_ms)
        return HttpReply(message.status_code, message.body, message.headers, elapsed_ms=elapsed_ms)
