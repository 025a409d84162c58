"""Tests of the chained skill's dialogues: the framework's own, and http dialogues that also serve."""

from pathlib import Path
from unittest.mock import MagicMock

import yaml
from aea.configurations.base import PublicId

from packages.settleproof.skills.settleproof_chained_abci import dialogues
from packages.valory.protocols.http.message import HttpMessage
from packages.valory.skills.abstract_round_abci import dialogues as framework


def test_dialogues() -> None:
    """Each dialogue class but the http dialogues is the framework's; skill.yaml names only existing classes."""
    for protocol in ("Abci", "Signing", "LedgerApi", "ContractApi", "Tendermint", "Ipfs"):
        for suffix in ("Dialogue", "Dialogues"):
            name = protocol + suffix
            assert getattr(dialogues, name) is getattr(framework, name), name
    assert dialogues.HttpDialogue is framework.HttpDialogue
    models = yaml.safe_load((Path(__file__).parents[1] / "skill.yaml").read_text())["models"]
    declared = {m["class_name"] for n, m in models.items() if n.endswith("_dialogues")}
    assert len(declared) == 7 and declared <= set(dir(dialogues))


def test_http_role_follows_who_asked() -> None:
    """Client for the requests the skill sends, server for requests that arrive from a connection."""
    context = MagicMock(skill_id=PublicId.from_str("settleproof/settleproof_chained_abci:0.1.0"))
    http = dialogues.HttpDialogues(name="http_dialogues", skill_context=context)
    _, ours = http.create(
        counterparty="valory/http_client:0.23.0", performative=HttpMessage.Performative.REQUEST,
        method="get", url="http://127.0.0.1:9/x", headers="", body=b"", version="",
    )
    assert ours.role == dialogues.HttpDialogue.Role.CLIENT
    incoming = HttpMessage(
        performative=HttpMessage.Performative.REQUEST, dialogue_reference=("1", ""),
        method="get", url="http://127.0.0.1:8000/metrics", headers="", body=b"", version="",
    )
    incoming.sender = "valory/http_server:0.22.0"
    incoming.to = str(context.skill_id)
    theirs = http.update(incoming)
    assert theirs is not None and theirs.role == dialogues.HttpDialogue.Role.SERVER
