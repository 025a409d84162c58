"""Tests of the settlement payloads: fields, values in the order the rounds select them, encoding."""

from typing import Any, Dict, Type

import pytest

from packages.settleproof.skills.settlement_abci.payloads import (
    CheckpointPayload,
    DedupePayload,
    RecoverStatePayload,
    DeliverWebhookPayload,
    FetchLogsQuorumPayload,
    KeeperFailoverPayload,
    SelectKeeperPayload,
)
from packages.settleproof.skills.settlement_abci.rounds import (
    CheckpointRound,
    DedupeRound,
    RecoverStateRound,
    DeliverWebhookRound,
    FetchLogsQuorumRound,
    KeeperFailoverRound,
    SelectKeeperRound,
)
from packages.valory.skills.abstract_round_abci.base import BaseTxPayload


SENDER = "agent_0"


@pytest.mark.parametrize(
    "payload_cls, fields",
    [
        (RecoverStatePayload, {"state": '{"seq":0}', "settings": '{"chain":"00"}'}),
        (SelectKeeperPayload, {"keeper": "agent_1"}),
        (FetchLogsQuorumPayload, {"observation": '{"from_block":1}'}),
        (DedupePayload, {"events_digest": "ef" * 32, "block_time": 1_700_000_000}),
        (DeliverWebhookPayload, {"delivery_report": '[{"error":"","id":"a:0x1","status":200}]'}),
        (KeeperFailoverPayload, {"keeper": "agent_2", "failovers": 2}),
        (CheckpointPayload, {"checkpoint": 110, "block_hash": "0x" + "12" * 32, "state_digest": "ab" * 32}),
    ],
)
def test_payload(payload_cls: Type[BaseTxPayload], fields: Dict[str, Any]) -> None:
    """Fields are kept, values are in field order, and encode/decode is lossless."""
    payload = payload_cls(SENDER, **fields)  # type: ignore[call-arg]
    assert payload.sender == SENDER
    assert payload.data == fields
    assert payload.values == tuple(fields.values())
    decoded = BaseTxPayload.decode(payload.encode())
    assert decoded == payload and type(decoded) is payload_cls
    with pytest.raises(AttributeError):
        setattr(payload, next(iter(fields)), None)


@pytest.mark.parametrize(
    "round_cls, payload_cls",
    [
        (RecoverStateRound, RecoverStatePayload),
        (SelectKeeperRound, SelectKeeperPayload),
        (FetchLogsQuorumRound, FetchLogsQuorumPayload),
        (DedupeRound, DedupePayload),
        (DeliverWebhookRound, DeliverWebhookPayload),
        (KeeperFailoverRound, KeeperFailoverPayload),
        (CheckpointRound, CheckpointPayload),
    ],
)
def test_each_round_takes_its_payload(round_cls: Any, payload_cls: Type[BaseTxPayload]) -> None:
    """Every round accepts exactly its payload class."""
    assert round_cls.payload_class is payload_cls


def test_tuple_selections_match_field_order() -> None:
    """Rounds selecting several values store them under keys in the payload's field order."""
    failover = KeeperFailoverPayload(SENDER, "agent_2", 3)
    assert dict(zip(KeeperFailoverRound.selection_key, failover.values)) == {
        "most_voted_keeper_address": "agent_2",
        "keeper_failovers": 3,
    }
    checkpoint = CheckpointPayload(SENDER, 110, "0x" + "12" * 32, "cd" * 32)
    assert dict(zip(CheckpointRound.selection_key, checkpoint.values)) == {
        "checkpoint_vote": 110,
        "block_hash": "0x" + "12" * 32,
        "state_digest": "cd" * 32,
    }
    dedupe = DedupePayload(SENDER, "ef" * 32, 1_700_000_000)
    assert dict(zip(DedupeRound.selection_key, dedupe.values)) == {
        "events_digest": "ef" * 32,
        "block_time": 1_700_000_000,
    }
