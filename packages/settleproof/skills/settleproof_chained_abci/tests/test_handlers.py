"""Tests of the chained skill's handlers: the settlement skill's, and an http handler serving our endpoints.

Requests are made by the http_server connection's own dialogues and answered by
the skill's handler and dialogues, so the exchange is checked by both sides' protocol rules.
"""

import datetime
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Tuple
from unittest.mock import MagicMock, patch

import yaml
from aea.configurations.base import PublicId
from prometheus_client import CollectorRegistry

from packages.settleproof.skills.settlement_abci import handlers as settlement
from packages.settleproof.skills.settlement_abci.metrics import WebhookMetrics
from packages.settleproof.skills.settleproof_chained_abci import handlers
from packages.settleproof.skills.settleproof_chained_abci.dialogues import HttpDialogues
from packages.valory.connections.http_server.connection import HttpDialogues as ServerSideDialogues
from packages.valory.protocols.http.message import HttpMessage
from packages.valory.skills.abstract_round_abci import handlers as framework


SKILL_ID = PublicId.from_str("settleproof/settleproof_chained_abci:0.1.0")
SERVER = "valory/http_server:0.22.0"


def test_handlers() -> None:
    """The settlement skill's handlers, an HttpHandler extending it, and skill.yaml names only existing classes."""
    assert handlers.ABCIHandler is settlement.ABCIHandler
    for name in ("SigningHandler", "LedgerApiHandler", "ContractApiHandler", "TendermintHandler", "IpfsHandler"):
        assert getattr(handlers, name) is getattr(framework, name)
    assert issubclass(handlers.HttpHandler, framework.HttpHandler)
    declared = yaml.safe_load((Path(__file__).parents[1] / "skill.yaml").read_text())["handlers"]
    assert {c["class_name"] for c in declared.values()} <= set(dir(handlers))


def setup_skill(round_sequence: Any) -> Tuple[handlers.HttpHandler, MagicMock]:
    """The handler in a context with real dialogues, a real registry and the given round sequence."""
    context = MagicMock(skill_id=SKILL_ID, agent_address="0xagent")
    context.http_dialogues = HttpDialogues(name="http_dialogues", skill_context=context)
    registry = CollectorRegistry()
    WebhookMetrics(registry).outbox_depth.set(2)
    context.metrics.registry = registry
    context.state.round_sequence = round_sequence
    context.params.reset_pause_duration = 10
    return handlers.HttpHandler(name="http", skill_context=context), context


def request(handler: handlers.HttpHandler, context: MagicMock, method: str, path: str) -> HttpMessage:
    """Send a request as the connection does; the response the handler put in the outbox."""
    server = ServerSideDialogues(self_address=SERVER)
    message, _ = server.create(
        counterparty=str(SKILL_ID), performative=HttpMessage.Performative.REQUEST,
        method=method, url=f"http://127.0.0.1:8000{path}", headers="", body=b"", version="",
    )
    context.outbox.reset_mock()
    handler.handle(message)
    response = context.outbox.put_message.call_args.kwargs["message"]
    assert server.update(response) is not None  # a valid reply in the connection's dialogue
    return response


def started_sequence() -> SimpleNamespace:
    """A round sequence in its second period, its last transition a second ago."""
    app = SimpleNamespace(
        current_round_id="dedupe_round",
        _previous_rounds=[SimpleNamespace(round_id="fetch_logs_quorum_round")],
        synchronized_data=SimpleNamespace(period_count=1),
    )
    return SimpleNamespace(
        _abci_app=app,
        _last_round_transition_timestamp=datetime.datetime.now() - datetime.timedelta(seconds=1),
        block_stall_deadline_expired=False,
    )


def test_get_metrics_serves_the_skill_registry() -> None:
    """GET /metrics answers 200 with the registry's exposition."""
    handler, context = setup_skill(started_sequence())
    response = request(handler, context, "get", "/metrics")
    assert response.status_code == 200 and "text/plain" in response.headers
    assert "webhook_outbox_depth 2.0" in response.body.decode()


def test_get_healthcheck_reports_the_round_sequence() -> None:
    """GET /healthcheck answers with the current round, period and transition age."""
    handler, context = setup_skill(started_sequence())
    response = request(handler, context, "get", "/healthcheck")
    doc = json.loads(response.body)
    assert response.status_code == 200 and "application/json" in response.headers
    assert doc["current_round"] == "dedupe_round" and doc["period"] == 1
    assert doc["rounds"] == ["fetch_logs_quorum_round", "dedupe_round"]
    assert 0.5 < doc["seconds_since_last_transition"] < 60 and doc["is_healthy"] is True
    assert doc["agent_address"] == "0xagent"


def test_healthcheck_before_the_fsm_is_set_up() -> None:
    """No AbciApp yet: still a 200, with unknown round and period."""
    handler, context = setup_skill(SimpleNamespace(_abci_app=None))
    doc = json.loads(request(handler, context, "get", "/healthcheck").body)
    assert doc["current_round"] is None and doc["period"] is None and doc["is_healthy"] is False


def test_other_paths_are_not_found() -> None:
    """Anything else is a 404, still answered (the connection would otherwise wait for its timeout)."""
    handler, context = setup_skill(started_sequence())
    assert request(handler, context, "get", "/admin").status_code == 404
    assert request(handler, context, "post", "/metrics").status_code == 404


def test_responses_to_our_requests_go_to_the_framework() -> None:
    """A response (to http_client or webhook_client requests) is dispatched by the settlement handler."""
    handler, _ = setup_skill(started_sequence())
    response = HttpMessage(
        performative=HttpMessage.Performative.RESPONSE, version="", status_code=200,
        status_text="OK", headers="", body=b"",
    )
    with patch.object(settlement.HttpHandler, "handle") as base:
        handler.handle(response)
    base.assert_called_once_with(response)
