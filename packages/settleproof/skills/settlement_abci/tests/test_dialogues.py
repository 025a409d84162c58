"""Tests of the dialogues.py module of the settlement skill, as the framework tests its own."""

# pylint: disable=protected-access

from enum import Enum
from pathlib import Path
from typing import Any, cast
from unittest.mock import MagicMock

import pytest
import yaml
from aea.protocols.dialogue.base import Dialogues

from packages.settleproof.skills.settlement_abci import dialogues
from packages.valory.skills.abstract_round_abci import dialogues as framework


SKILL_YAML = Path(__file__).parents[1] / "skill.yaml"


@pytest.mark.parametrize(
    "name, framework_cls",
    [
        (name, getattr(framework, name))
        for name in (
            "AbciDialogue", "AbciDialogues", "HttpDialogue", "HttpDialogues",
            "SigningDialogue", "SigningDialogues", "LedgerApiDialogue", "LedgerApiDialogues",
            "ContractApiDialogue", "ContractApiDialogues", "TendermintDialogue",
            "TendermintDialogues", "IpfsDialogue", "IpfsDialogues",
        )
    ],
)
def test_dialogue_is_the_framework_one(name: str, framework_cls: Any) -> None:
    """Each dialogue class is the framework's own."""
    assert getattr(dialogues, name) is framework_cls


@pytest.mark.parametrize(
    "dialogues_cls, role",
    [
        (dialogues.AbciDialogues, dialogues.AbciDialogue.Role.CLIENT),
        (dialogues.HttpDialogues, dialogues.HttpDialogue.Role.CLIENT),
        (dialogues.SigningDialogues, dialogues.SigningDialogue.Role.SKILL),
        (dialogues.LedgerApiDialogues, dialogues.LedgerApiDialogue.Role.AGENT),
        (dialogues.ContractApiDialogues, dialogues.ContractApiDialogue.Role.AGENT),
        (dialogues.TendermintDialogues, dialogues.TendermintDialogue.Role.AGENT),
    ],
)
def test_dialogues_creation(dialogues_cls: Any, role: Enum) -> None:
    """The skill's side of each dialogue has the expected role."""
    instance = cast(Dialogues, dialogues_cls(name="", skill_context=MagicMock()))
    assert instance._role_from_first_message(MagicMock(), MagicMock()) == role


def test_skill_yaml_declares_the_dialogues() -> None:
    """Every *_dialogues model of skill.yaml exists in dialogues.py."""
    models = yaml.safe_load(SKILL_YAML.read_text())["models"]
    declared = {name: m["class_name"] for name, m in models.items() if name.endswith("_dialogues")}
    assert set(declared) == {
        "abci_dialogues", "http_dialogues", "signing_dialogues", "ledger_api_dialogues",
        "contract_api_dialogues", "tendermint_dialogues", "ipfs_dialogues",
    }
    for class_name in declared.values():
        assert hasattr(dialogues, class_name), class_name
