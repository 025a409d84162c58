"""Reading the agents' JSON log lines (the real agents' lines are read in the end-to-end tests)."""

import json

import pytest

from settleproof.agent_logs import checkpoint_at_least, event, events, latest_keeper, parse

KEEPER_A, KEEPER_B = "0x" + "a" * 40, "0x" + "B" * 40


def line(message: str, **fields: object) -> str:
    """A record as the agent's formatter writes it."""
    return json.dumps({"level": "INFO", "logger": "aea.agent0", "message": message, **fields, "time": "t"})


def test_only_json_objects_are_records() -> None:
    """The CLI's banner, a traceback line, a JSON list or a cut line are not records."""
    assert parse(line("checkpoint", block=5)) == {
        "level": "INFO", "logger": "aea.agent0", "message": "checkpoint", "block": 5, "time": "t"
    }
    for text in ("Starting AEA 'agent0' in 'async' mode...", "  File \"x.py\", line 1", "[1, 2]", '{"message": "che'):
        assert parse(text) is None


def test_event_needs_the_message_and_every_field() -> None:
    """Field values compare as logged (an int stays an int)."""
    settled = line("invoice settled", invoice_uuid="u1", tx_hash="0x1", block=7)
    assert event("invoice settled", invoice_uuid="u1")(settled)["block"] == 7
    assert event("invoice settled", invoice_uuid="u2")(settled) is None
    assert event("invoice settled", block="7")(settled) is None
    assert event("invoice")(settled) is None
    lines = [settled, "banner", line("invoice settled", invoice_uuid="u2"), line("checkpoint", block=9)]
    assert [r.get("invoice_uuid") for r in events(lines, "invoice settled")] == ["u1", "u2"]


def test_checkpoint_at_least() -> None:
    """The block of a checkpoint vote at or past the bound; other lines and lower blocks give None."""
    found = checkpoint_at_least(10)
    assert found(line("checkpoint", block=12)) == 12
    assert found(line("checkpoint", block=10)) == 10
    assert found(line("checkpoint", block=9)) is None
    assert found(line("checkpoint", block=None)) is None
    assert found(line("checkpoint block hash unknown: no provider quorum", block=50)) is None


def test_latest_keeper_is_the_one_all_agents_named() -> None:
    """The latest period wins; addresses compare case-insensitively; a split is an error."""
    agent0 = [line("keeper selected", period=3, keeper=KEEPER_A), line("keeper selected", period=4, keeper=KEEPER_B)]
    agent1 = [line("keeper selected", period=4, keeper=KEEPER_B.lower())]
    assert latest_keeper([agent0, agent1]) == (4, KEEPER_B.lower())
    with pytest.raises(ValueError):
        latest_keeper([agent0, [line("keeper selected", period=4, keeper=KEEPER_A)]])
