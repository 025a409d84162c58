"""The keeper's side of delivery: POST the due events, a bounded number at a time, within the round.

Requests go through our `webhook_client` connection, which never follows
redirects. At most `concurrency` requests are in flight; each gets `timeout`
seconds, cut to what is left of `budget` seconds from the start, so the keeper
always has time left to send its report before the keeper round times out (a
late keeper's work would be lost). New requests start while at least
`MIN_REQUEST_SECONDS` of the budget is left; one cut short is reported as a
timeout and retried later under the same id.
"""

import math
import time
from abc import ABC
from dataclasses import dataclass
from typing import Dict, Generator, List, Optional, Sequence, Tuple, cast

from packages.settleproof.connections.webhook_client import (
    PUBLIC_ID as WEBHOOK_CLIENT_ID,
)
from packages.settleproof.skills.settlement_abci.behaviour_base import (
    HttpReply,
    HttpRequest,
    SettlementBaseBehaviour,
)
from packages.valory.protocols.http import HttpMessage
from packages.valory.skills.abstract_round_abci.base import RoundSequence
from packages.valory.skills.abstract_round_abci.behaviour_utils import TimeoutException
from packages.valory.skills.abstract_round_abci.behaviours import BaseBehaviour
from packages.valory.skills.abstract_round_abci.models import Requests


WEBHOOK_CLIENT = str(WEBHOOK_CLIENT_ID)
#: The connection's status for "no reply" (as valory/http_client).
NO_REPLY_STATUS = 600
#: Seconds of a keeper round kept for sending the report: at least this, or a third of the round.
REPORT_MARGIN_SECONDS = 5.0
#: No request starts with less than this left of the budget.
MIN_REQUEST_SECONDS = 1.0
#: The keeper's clock (a module attribute, so tests can move it).
clock = time.monotonic


@dataclass(frozen=True)
class Sent:
    """One request that was sent: the reply (status 0 for none) and how long it took."""

    reply: HttpReply
    seconds: float


def block_time(round_sequence: RoundSequence) -> int:
    """Unix seconds of the block that started the current round: the same on every agent."""
    return int(math.floor(round_sequence.last_round_transition_timestamp.timestamp()))


def delivery_budget(round_timeout: float) -> float:
    """Seconds the keeper may spend POSTing in one keeper round."""
    return max(0.0, round_timeout - max(REPORT_MARGIN_SECONDS, round_timeout / 3))


class WebhookSenderMixin(SettlementBaseBehaviour, ABC):
    """Sends HTTP requests through `webhook_client`, bounded in number, time per request and total time."""

    def post_within(
        self, requests: Sequence[HttpRequest], concurrency: int, timeout: float, budget: float
    ) -> Generator[None, None, List[Optional[Sent]]]:
        """What each request gave, in request order; None for one never started (the budget ran out).

        A request without a reply after `timeout` is reported as status 0 with an error.
        """
        replies: Dict[int, Tuple[HttpMessage, float]] = {}
        done: Dict[int, Sent] = {}
        in_flight: Dict[int, Tuple[float, float]] = {}  # position -> (sent at, deadline)
        end = clock() + budget
        position = 0
        while True:
            now = clock()
            while position < len(requests) and len(in_flight) < max(1, concurrency) and end - now >= MIN_REQUEST_SECONDS:
                self._post(requests[position], replies, position)
                in_flight[position] = (now, now + min(timeout, end - now))
                position += 1
            if not in_flight:
                break
            first = min(deadline for _, deadline in in_flight.values())
            try:
                yield from self.wait_for_condition(
                    lambda: any(p in replies for p in in_flight), max(0.0, first - clock())
                )
                timed_out = False
            except TimeoutException:
                timed_out = True
            for arrived in [p for p in in_flight if p in replies]:
                message, at = replies[arrived]
                sent_at, _ = in_flight.pop(arrived)
                done[arrived] = Sent(_reply(message), max(0.0, at - sent_at))
            for late in [p for p, (_, deadline) in in_flight.items() if timed_out and deadline <= first]:
                sent_at, deadline = in_flight.pop(late)
                waited = deadline - sent_at
                done[late] = Sent(HttpReply(0, error=f"timed out after {waited:.3g}s"), waited)
        return [done.get(i) for i in range(len(requests))]

    def _post(
        self, request: HttpRequest, replies: Dict[int, Tuple[HttpMessage, float]], position: int
    ) -> None:
        """Send one request to webhook_client; its reply lands in `replies[position]`."""
        message, dialogue = self.http_request_to(WEBHOOK_CLIENT, request)

        def store(reply: HttpMessage, _behaviour: BaseBehaviour) -> None:
            replies[position] = (reply, clock())

        nonce = self._get_request_nonce_from_dialogue(dialogue)
        cast(Requests, self.context.requests).request_id_to_callback[nonce] = store
        self.context.outbox.put_message(message=message)


def _reply(message: HttpMessage) -> HttpReply:
    """The merchant's answer, or status 0 with the connection's reason when none came."""
    if message.status_code >= NO_REPLY_STATUS:
        return HttpReply(0, error=message.body.decode(errors="replace").strip()[-200:])
    return HttpReply(message.status_code, message.body, message.headers)
