"""The agent's own HTTP endpoints, `/metrics` and `/healthcheck`, as pure functions of what they report.

The handler reads the skill context once per request and hands the values here,
so the replies are tested without an agent. `/healthcheck` follows the framework
agents' convention (Valory's trader and Pearl read these fields).
"""

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Dict, List, Optional
from urllib.parse import urlparse

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthcheck"
JSON_TYPE = "application/json"
#: Rounds listed before the current one, as the framework's agents do.
ROUNDS_SHOWN = 25


@dataclass(frozen=True)
class Reply:
    """One HTTP reply, ready for an `HttpMessage` response."""

    status: HTTPStatus
    content_type: str
    body: bytes

    @property
    def headers(self) -> str:
        """The headers in the http protocol's string form."""
        return f"Content-Type: {self.content_type}\n"


@dataclass(frozen=True)
class RoundView:
    """What the healthcheck needs from the round sequence, read once."""

    current_round: Optional[str]
    previous_rounds: List[str]
    period: Optional[int]
    last_transition: Optional[float]  # unix seconds of the last round transition's block
    tendermint_stalled: bool


def route(method: str, url: str) -> Optional[str]:
    """`metrics` or `healthcheck` for a GET/HEAD of that path (query and trailing slash ignored), else None."""
    if method.lower() not in ("get", "head"):
        return None
    path = urlparse(url).path.rstrip("/")
    return {METRICS_PATH: "metrics", HEALTH_PATH: "healthcheck"}.get(path)


def metrics_reply(registry: CollectorRegistry) -> Reply:
    """The registry in Prometheus' text exposition format."""
    return Reply(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(registry))


def json_reply(data: Dict[str, Any], status: HTTPStatus = HTTPStatus.OK) -> Reply:
    """A JSON body."""
    return Reply(status, JSON_TYPE, json.dumps(data, sort_keys=True).encode("utf-8"))


def not_found_reply(method: str, url: str) -> Reply:
    """Anything but the two endpoints."""
    path = urlparse(url).path
    return json_reply({"error": f"no endpoint {method.upper()} {path}"}, HTTPStatus.NOT_FOUND)


def healthcheck(view: RoundView, now: float, reset_pause_duration: float, agent: str) -> Dict[str, Any]:
    """The healthcheck document; transition-based fields are None until the first transition.

    Transitioning fast means Tendermint is not stalled and the last transition is
    younger than two reset pauses, the framework agents' criterion.
    """
    seconds = None if view.last_transition is None else max(0.0, now - view.last_transition)
    fast = None if seconds is None else (not view.tendermint_stalled and seconds < 2 * reset_pause_duration)
    rounds = view.previous_rounds[-ROUNDS_SHOWN:] + ([view.current_round] if view.current_round else [])
    return {
        "agent_address": agent,
        "current_round": view.current_round,
        "period": view.period,
        "rounds": rounds,
        "seconds_since_last_transition": seconds,
        "is_tm_healthy": not view.tendermint_stalled,
        "is_transitioning_fast": fast,
        "is_healthy": bool(fast),
        "reset_pause_duration": reset_pause_duration,
    }
