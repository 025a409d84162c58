"""Tests of the handlers.py module of the settlement skill: the framework's handlers, as declared in skill.yaml."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from packages.settleproof.skills.settlement_abci import handlers
from packages.valory.skills.abstract_round_abci import handlers as framework


SKILL_YAML = Path(__file__).parents[1] / "skill.yaml"


@pytest.mark.parametrize(
    "name, framework_cls",
    [
        ("ABCIHandler", framework.ABCIRoundHandler),
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
