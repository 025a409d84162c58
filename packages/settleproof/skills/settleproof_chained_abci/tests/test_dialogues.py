"""Tests of the chained skill's dialogues: the framework's own."""

from pathlib import Path

import yaml

from packages.settleproof.skills.settleproof_chained_abci import dialogues
from packages.valory.skills.abstract_round_abci import dialogues as framework


def test_dialogues() -> None:
    """Each dialogue class is the framework's, and skill.yaml names only existing classes."""
    for protocol in ("Abci", "Http", "Signing", "LedgerApi", "ContractApi", "Tendermint", "Ipfs"):
        for suffix in ("Dialogue", "Dialogues"):
            name = protocol + suffix
            assert getattr(dialogues, name) is getattr(framework, name), name
    models = yaml.safe_load((Path(__file__).parents[1] / "skill.yaml").read_text())["models"]
    declared = {m["class_name"] for n, m in models.items() if n.endswith("_dialogues")}
    assert len(declared) == 7 and declared <= set(dir(dialogues))
