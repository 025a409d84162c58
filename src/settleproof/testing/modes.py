"""What a byzantine agent sends instead of the truth: one pure function per mode, payload fields in, fields out.

A mode rewrites the fields of one outgoing payload (``payload.data``: field name
-> value), named by its class (``"FetchLogsQuorumPayload"``). Nothing here imports
the framework or the skill, so the byzantine launcher can load it before the
agent's packages exist and unit tests drive it with plain dicts. The formats are
the skill's: an observation is ``agreement.Observation.to_json`` (positional
arrays, tokens listed once), a delivery report a JSON list of
``outbox.DeliveryResult`` objects.

Two kinds of lie:
- refused at the door (``garbage``, ``future_time``): no honest agent would send
  them, and every honest agent's ``check_payload`` must say so;
- well-formed lies (``omit``, ``invent``, ``tiny_range``, and the keeper's false
  claims in ``byzantine.py``): they pass every check, and only the rounds'
  agreement rules keep them from deciding anything.

Adding a mode: write ``def my_mode(kind, fields, facts) -> fields``, add it to
``PAYLOAD_MODES``. ``wrong_settings`` reports settings digests nobody else has;
an honest agent started with other settings is another test (it stops itself).
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

Fields = Dict[str, Any]

HONEST = "honest"
#: A year ahead: far beyond any clock skew, well inside the skill's integer bounds.
FUTURE_SECONDS = 365 * 24 * 3600
#: Deep enough to overflow the C stack of a decoder at the interpreter's raised recursion limit.
NESTING_DEPTH = 100_000
#: Large but under what the framework can send: the tx travels hex-encoded in a URL (about 1 MB max).
HUGE_CHARS = 200_000


@dataclass(frozen=True)
class Facts:
    """What the behaviour knows when it sends: the round's block time and the watched tokens."""

    block_time: int
    tokens: Tuple[str, ...]
    #: Which variant of a mode with several (``garbage``) to send: the sender counts, per mode and class.
    turn: int = 0


def nested(depth: int = NESTING_DEPTH) -> str:
    """``[[[...]]]`` nested ``depth`` deep, as text: decoded naively, it exhausts the stack."""
    return "[" * depth + "]" * depth


def _hex(chars: int) -> str:
    return "0x" + secrets.token_hex(chars // 2)


def _junk_observation(turn: int) -> str:
    """A JSON observation with one broken field: a payment outside its range, or upper-case addresses."""
    shapes = [
        {"from_block": 10, "to_block": 5, "anchor_hash": "", "tokens": ["0x" + "a" * 40],
         "blocks": [[99, _hex(64), 1]], "payments": [[99, 0, _hex(64), 0, "0x" + "b" * 40, "0x" + "c" * 40, "1"]],
         "invoices": []},
        {"from_block": "1", "to_block": None, "anchor_hash": 7, "tokens": [["x"]], "blocks": {}, "payments": 1,
         "invoices": "none"},
        {"from_block": 1, "to_block": 1, "anchor_hash": "", "tokens": ["0x" + "A" * 40], "blocks": [],
         "payments": [], "invoices": [["no spaces allowed", 0, "0x" + "C" * 40, "-1", None, None]]},
    ]
    return json.dumps(shapes[turn % len(shapes)])


def garbage_variants(kind: str, turn: int) -> List[Fields]:
    """Every junk replacement for a payload of class ``kind``: wrong types where the dataclass lets
    them through, huge and deeply nested text, and well-typed values no parser accepts."""
    # The most dangerous first: a row that sees a few turns has sent these.
    junk_text: List[Any] = [nested(), "y" * HUGE_CHARS, [{"id": 1}], "x", 12, None]
    variants: Dict[str, List[Fields]] = {
        "RecoverStatePayload": [{"state": value, "settings": value} for value in junk_text]
        + [{"state": json.dumps({"seq": -1, "checkpoint": "x", "values": {}, "digest": "0"}),
            "settings": json.dumps({"chain": "0" * 64})}],
        "SelectKeeperPayload": [{"keeper": value} for value in junk_text] + [{"keeper": "0x" + "1" * 40}],
        "FetchLogsQuorumPayload": [{"observation": value} for value in junk_text]
        + [{"observation": _junk_observation(turn)}, {"observation": '{"from_block": Infinity}'}],
        "DedupePayload": [
            {"events_digest": nested(), "block_time": -1},
            {"events_digest": "x", "block_time": "x"},
            {"events_digest": 12, "block_time": 2**64},
            {"events_digest": "0" * 64, "block_time": float("nan")},
            {"events_digest": ["0" * 64], "block_time": True},
            {"events_digest": "Z" * 64, "block_time": 1.5},
        ],
        "DeliverWebhookPayload": [{"delivery_report": value} for value in junk_text]
        + [
            {"delivery_report": json.dumps([{"id": 1}])},
            {"delivery_report": json.dumps({"id": "x", "status": 200})},
            {"delivery_report": json.dumps([{"id": "not-due:0x1", "status": 200, "error": "",
                                            "attempted_at": 0, "retry_at": 0}])},
        ],
        "KeeperFailoverPayload": [
            {"keeper": nested(), "failovers": "1"},
            {"keeper": "x", "failovers": -1},
            {"keeper": 12, "failovers": 2**63},
            {"keeper": "0x" + "1" * 40, "failovers": None},
        ],
        "CheckpointPayload": [
            {"checkpoint": 2**64, "block_hash": "0xZZ", "state_digest": nested()},
            {"checkpoint": "x", "block_hash": 12, "state_digest": None},
            {"checkpoint": -5, "block_hash": "y" * HUGE_CHARS, "state_digest": "0" * 63},
            {"checkpoint": [1], "block_hash": "", "state_digest": "0" * 64},
        ],
    }
    return variants.get(kind, [])


def garbage(kind: str, fields: Fields, facts: Facts) -> Fields:
    """Junk in every field: the ``facts.turn``-th variant for this payload class (cycling)."""
    variants = garbage_variants(kind, facts.turn)
    return dict(variants[facts.turn % len(variants)]) if variants else dict(fields)


def _observation_mode(edit: Callable[[Dict[str, Any], Facts], None]) -> Callable[[str, Fields, Facts], Fields]:
    """A mode that edits only FetchLogsQuorum observations (decoded JSON), and sends the rest as is."""

    def mode(kind: str, fields: Fields, facts: Facts) -> Fields:
        if kind != "FetchLogsQuorumPayload":
            return dict(fields)
        document = json.loads(fields["observation"])
        if document.get("from_block", -1) >= 0:  # a first, head-only report has nothing to lie about
            edit(document, facts)
        return {**fields, "observation": json.dumps(document, separators=(",", ":"))}

    mode.__doc__ = edit.__doc__
    return mode


def _keep_blocks_of_payments(document: Dict[str, Any]) -> None:
    used = {payment[0] for payment in document["payments"]}
    document["blocks"] = [block for block in document["blocks"] if block[0] in used]


def _omit(document: Dict[str, Any], _facts: Facts) -> None:
    """Report the range but none of the payments in it."""
    document["payments"] = []
    document["blocks"] = []


def _tiny_range(document: Dict[str, Any], _facts: Facts) -> None:
    """Claim nothing could be scanned (``to_block = from_block - 1``), no payments."""
    document["to_block"] = document["from_block"] - 1
    document["payments"] = []
    document["blocks"] = []


def _invent(document: Dict[str, Any], facts: Facts) -> None:
    """Scan one block only, and list a made-up invoice (new uuid, a watched token, a random receiver)
    with a made-up payment to it in that block: well-formed, seen by this agent alone."""
    rng = random.Random(secrets.randbits(64))
    start = document["from_block"]
    document["to_block"] = start
    document["payments"] = [payment for payment in document["payments"] if payment[0] <= start]
    _keep_blocks_of_payments(document)
    tokens: List[str] = document["tokens"]
    token = next((t for t in tokens if t in {w.lower() for w in facts.tokens}), None)
    if token is None:
        token = (facts.tokens[0] if facts.tokens else "0x" + "0" * 40).lower()
        tokens.append(token)
    index = tokens.index(token)
    receiver = "0x%040x" % rng.getrandbits(160)
    invoice = [f"invented-{rng.getrandbits(64):016x}", index, receiver, "1000", None, None]
    document["invoices"] = [*(document.get("invoices") or []), invoice]
    if not any(block[0] == start for block in document["blocks"]):
        document["blocks"].append([start, "0x%064x" % rng.getrandbits(256), facts.block_time])
    sender = "0x%040x" % rng.getrandbits(160)
    document["payments"].append([start, 9999, "0x%064x" % rng.getrandbits(256), index, sender, receiver, "1000"])


def future_time(kind: str, fields: Fields, facts: Facts) -> Fields:
    """Stamp Dedupe votes and delivery results a year after the round's block time."""
    later = facts.block_time + FUTURE_SECONDS
    if kind == "DedupePayload":
        return {**fields, "block_time": later}
    if kind == "DeliverWebhookPayload":
        results = json.loads(fields["delivery_report"])
        for result in results:
            result["attempted_at"] = later
            if result.get("retry_at"):
                result["retry_at"] += FUTURE_SECONDS
        return {**fields, "delivery_report": json.dumps(results, separators=(",", ":"), sort_keys=True)}
    return dict(fields)


def wrong_settings(kind: str, fields: Fields, _facts: Facts) -> Fields:
    """Report settings digests no other agent has (well formed): the agents agree on the others'."""
    if kind != "RecoverStatePayload":
        return dict(fields)
    return {**fields, "settings": json.dumps({name: "e" * 64 for name in ("chain", "merchant", "outbox")},
                                             separators=(",", ":"))}


def honest(_kind: str, fields: Fields, _facts: Facts) -> Fields:
    """The payload as the honest code made it."""
    return dict(fields)


PayloadMode = Callable[[str, Fields, Facts], Fields]

#: Modes that rewrite outgoing payloads.
PAYLOAD_MODES: Dict[str, PayloadMode] = {
    HONEST: honest,
    "garbage": garbage,
    "omit": _observation_mode(_omit),
    "invent": _observation_mode(_invent),
    "tiny_range": _observation_mode(_tiny_range),
    "future_time": future_time,
    "wrong_settings": wrong_settings,
}

#: Modes in which the keeper reports every due event as answered with this status without POSTing
#: anything (200: "delivered"; 410: "gone", dead-lettered at once). Its other payloads stay honest.
FALSE_DELIVERY_MODES: Dict[str, int] = {"false_delivery": 200, "false_delivery_gone": 410}

MODES = frozenset(PAYLOAD_MODES) | frozenset(FALSE_DELIVERY_MODES)


def mutate(mode: str, kind: str, fields: Fields, facts: Facts) -> Fields:
    """The fields a byzantine agent in ``mode`` sends instead of ``fields`` (unchanged for modes that
    do not touch payloads)."""
    return PAYLOAD_MODES.get(mode, honest)(kind, fields, facts)


def false_results(event_ids: List[str], status: int, now: int) -> List[Dict[str, Any]]:
    """The keeper's false claim: every due event answered ``status`` at block time ``now``, as fields
    of ``outbox.DeliveryResult`` (a final status has no retry time), without a single POST."""
    return [{"id": event_id, "status": status, "error": "", "attempted_at": now, "retry_at": 0}
            for event_id in event_ids]
