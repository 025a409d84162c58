"""Message handlers of the chained skill: the settlement skill's, plus the agent's own HTTP endpoints.

The http handler also serves the `valory/http_server` connection: `GET /metrics`
(the skill's Prometheus registry) and `GET /healthcheck` (round, period, seconds
since the last transition), so operators can scrape every agent.
"""

import time
from typing import Optional, cast

from aea.protocols.base import Message

from packages.settleproof.skills.settlement_abci.handlers import (  # noqa: F401
    ABCIHandler,
    ContractApiHandler,
    IpfsHandler,
    LedgerApiHandler,
    SigningHandler,
    TendermintHandler,
)
from packages.settleproof.skills.settlement_abci.handlers import (
    HttpHandler as SettlementHttpHandler,
)
from packages.settleproof.skills.settleproof_chained_abci.endpoints import (
    Reply,
    RoundView,
    healthcheck,
    json_reply,
    metrics_reply,
    not_found_reply,
    route,
)
from packages.valory.protocols.http.message import HttpMessage
from packages.valory.skills.abstract_round_abci.base import RoundSequence


def round_view(sequence: RoundSequence) -> RoundView:
    """The round sequence's state as the healthcheck reports it; empty before the FSM is set up."""
    # pylint: disable=protected-access  # the framework's agents read these the same way
    app = sequence._abci_app
    if app is None:
        return RoundView(None, [], None, None, False)
    stamp = sequence._last_round_transition_timestamp
    return RoundView(
        current_round=app.current_round_id,
        previous_rounds=[r.round_id for r in app._previous_rounds],
        period=app.synchronized_data.period_count,
        last_transition=None if stamp is None else stamp.timestamp(),
        tendermint_stalled=sequence.block_stall_deadline_expired,
    )


class HttpHandler(SettlementHttpHandler):
    """Answers requests from the http_server connection; responses to our own requests go to the framework."""

    def handle(self, message: Message) -> None:
        """Serve an incoming request, or hand a response to the framework's callback dispatch."""
        http_msg = cast(HttpMessage, message)
        if http_msg.performative != HttpMessage.Performative.REQUEST:
            super().handle(message)
            return
        dialogue = self.context.http_dialogues.update(http_msg)
        if dialogue is None:
            self.context.logger.warning(f"unidentified http request dialogue: {http_msg}")
            return
        reply = self.reply_to(http_msg.method, http_msg.url)
        response = dialogue.reply(
            performative=HttpMessage.Performative.RESPONSE,
            target_message=http_msg,
            version=http_msg.version,
            status_code=reply.status.value,
            status_text=reply.status.phrase,
            headers=reply.headers,
            body=reply.body,
        )
        self.context.outbox.put_message(message=response)

    def reply_to(self, method: str, url: str) -> Reply:
        """The reply for one request."""
        endpoint: Optional[str] = route(method, url)
        if endpoint == "metrics":
            return metrics_reply(self.context.metrics.registry)
        if endpoint == "healthcheck":
            view = round_view(self.context.state.round_sequence)
            params = self.context.params
            return json_reply(
                healthcheck(view, time.time(), params.reset_pause_duration, self.context.agent_address)
            )
        return not_found_reply(method, url)
