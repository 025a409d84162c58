"""Tests of endpoints.py: routing, the metrics exposition and the healthcheck document."""

import json
from http import HTTPStatus

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge

from packages.settleproof.skills.settleproof_chained_abci.endpoints import (
    ROUNDS_SHOWN,
    RoundView,
    healthcheck,
    metrics_reply,
    not_found_reply,
    route,
)


@pytest.mark.parametrize("method, url, expected", [
    ("GET", "http://127.0.0.1:8000/metrics", "metrics"),
    ("get", "http://localhost:8000/metrics/", "metrics"),
    ("HEAD", "http://127.0.0.1:8000/healthcheck?x=1", "healthcheck"),
    ("GET", "http://127.0.0.1:8000/healthcheck", "healthcheck"),
    ("POST", "http://127.0.0.1:8000/metrics", None),
    ("GET", "http://127.0.0.1:8000/", None),
    ("GET", "http://127.0.0.1:8000/metrics/x", None),
])
def test_route(method: str, url: str, expected: str) -> None:
    """Only GET/HEAD of the two paths are served."""
    assert route(method, url) == expected


def test_metrics_reply_is_the_registry_exposition() -> None:
    """The body is the registry's own text format, with Prometheus' content type."""
    registry = CollectorRegistry()
    Gauge("webhook_outbox_depth", "events waiting", registry=registry).set(3)
    reply = metrics_reply(registry)
    assert reply.status == HTTPStatus.OK and reply.content_type == CONTENT_TYPE_LATEST
    assert "webhook_outbox_depth 3.0" in reply.body.decode()
    assert reply.headers == f"Content-Type: {CONTENT_TYPE_LATEST}\n"


def test_not_found_names_the_request() -> None:
    """Anything else is a JSON 404."""
    reply = not_found_reply("post", "http://127.0.0.1:8000/nope?a=b")
    assert reply.status == HTTPStatus.NOT_FOUND
    assert json.loads(reply.body) == {"error": "no endpoint POST /nope"}


def view(last_transition: float = 100.0, stalled: bool = False) -> RoundView:
    """A round sequence in the settlement app, period 3."""
    return RoundView("dedupe_round", ["select_keeper_round", "fetch_logs_quorum_round"], 3, last_transition, stalled)


def test_healthcheck_after_a_recent_transition() -> None:
    """Fields in the framework agents' convention, plus the current round and the agent."""
    doc = healthcheck(view(), now=105.0, reset_pause_duration=10, agent="0xabc")
    assert doc == {
        "agent_address": "0xabc",
        "current_round": "dedupe_round",
        "period": 3,
        "rounds": ["select_keeper_round", "fetch_logs_quorum_round", "dedupe_round"],
        "seconds_since_last_transition": 5.0,
        "is_tm_healthy": True,
        "is_transitioning_fast": True,
        "is_healthy": True,
        "reset_pause_duration": 10,
    }


@pytest.mark.parametrize("now, stalled, fast", [(119.9, False, True), (120.0, False, False), (101.0, True, False)])
def test_transitioning_fast_needs_a_recent_transition_and_a_live_tendermint(
    now: float, stalled: bool, fast: bool
) -> None:
    """Fast means younger than two reset pauses, with Tendermint delivering blocks."""
    doc = healthcheck(view(stalled=stalled), now=now, reset_pause_duration=10, agent="0xabc")
    assert doc["is_transitioning_fast"] is fast and doc["is_healthy"] is fast
    assert doc["is_tm_healthy"] is not stalled


def test_healthcheck_before_any_transition() -> None:
    """Before the FSM started, the time-based fields are unknown and the agent is not healthy yet."""
    doc = healthcheck(RoundView(None, [], None, None, False), now=5.0, reset_pause_duration=10, agent="0xabc")
    assert doc["current_round"] is None and doc["rounds"] == [] and doc["period"] is None
    assert doc["seconds_since_last_transition"] is None and doc["is_transitioning_fast"] is None
    assert doc["is_healthy"] is False


def test_healthcheck_lists_a_bounded_history_and_no_negative_age() -> None:
    """A long history is cut; a block stamped ahead of the local clock reads as zero seconds."""
    long = RoundView("dedupe_round", [f"r{i}" for i in range(100)], 40, 200.0, False)
    doc = healthcheck(long, now=150.0, reset_pause_duration=10, agent="0xabc")
    assert len(doc["rounds"]) == ROUNDS_SHOWN + 1 and doc["rounds"][-2] == "r99"
    assert doc["seconds_since_last_transition"] == 0.0
