"""Tests of the handlers.py module of the settlement skill: the framework's handlers, as declared in skill.yaml."""

from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
import yaml

from packages.settleproof.skills.settlement_abci import handlers
from packages.settleproof.skills.settlement_abci.payloads import SelectKeeperPayload
from packages.valory.protocols.abci import AbciMessage
from packages.valory.skills.abstract_round_abci.base import Transaction
from packages.valory.skills.abstract_round_abci import handlers as framework


SKILL_YAML = Path(__file__).parents[1] / "skill.yaml"


@pytest.mark.parametrize(
    "name, framework_cls",
    [
        ("HttpHandler", framework.HttpHandler),
        ("SigningHandler", framework.SigningHandler),
        ("LedgerApiHandler", framework.LedgerApiHandler),
        ("ContractApiHandler", framework.ContractApiHandler),
        ("TendermintHandler", framework.TendermintHandler),
        ("IpfsHandler", framework.IpfsHandler),
    ],
)
def test_handler_is_the_framework_one(name: str, framework_cls: Any) -> None:
    """Each handler is the framework's own (no behaviour of ours to test)."""
    assert getattr(handlers, name) is framework_cls


def test_skill_yaml_declares_the_handlers() -> None:
    """Every handler the skill.yaml names exists; the common ABCI handlers are all there."""
    declared = yaml.safe_load(SKILL_YAML.read_text())["handlers"]
    assert set(declared) == {"abci", "http", "signing", "ledger_api", "contract_api", "tendermint", "ipfs"}
    for config in declared.values():
        assert hasattr(handlers, config["class_name"]), config["class_name"]


@pytest.mark.parametrize(
    "tx", [b"\xff\xfe", b"not json", b'{"payload": {}}', b'{"payload": "x", "signature": 1}']
)
@pytest.mark.parametrize("method, performative", [
    ("check_tx", AbciMessage.Performative.RESPONSE_CHECK_TX),
    ("deliver_tx", AbciMessage.Performative.RESPONSE_DELIVER_TX),
])
def test_undecodable_tx_is_rejected_not_raised(tx: bytes, method: str, performative: Any) -> None:
    """A tx that does not decode gets an error code back; the framework alone would raise."""
    handler = handlers.ABCIHandler(name="abci", skill_context=MagicMock())
    dialogue = MagicMock()
    getattr(handler, method)(MagicMock(tx=tx), dialogue)
    reply = dialogue.reply.call_args.kwargs
    assert reply["performative"] == performative
    assert reply["code"] != 0 and reply["info"] == handlers.UNDECODABLE


def test_a_well_formed_tx_is_decodable() -> None:
    """Only undecodable txs are short-circuited; real ones go to the framework's checks."""
    payload = SelectKeeperPayload(sender="0x" + "1" * 40, keeper="0x" + "2" * 40)
    assert handlers.decodable(Transaction(payload, signature="0xab").encode())
    assert issubclass(handlers.ABCIHandler, framework.ABCIRoundHandler)
