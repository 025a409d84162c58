"""Tests of the chained skill's handlers: the settlement skill's, one per common protocol."""

from pathlib import Path

import yaml

from packages.settleproof.skills.settlement_abci import handlers as settlement
from packages.settleproof.skills.settleproof_chained_abci import handlers
from packages.valory.skills.abstract_round_abci import handlers as framework


def test_handlers() -> None:
    """Each handler is the settlement skill's, and skill.yaml names only existing classes."""
    assert handlers.ABCIHandler is settlement.ABCIHandler
    for name in ("HttpHandler", "SigningHandler", "LedgerApiHandler", "ContractApiHandler",
                 "TendermintHandler", "IpfsHandler"):
        assert getattr(handlers, name) is getattr(framework, name)
    declared = yaml.safe_load((Path(__file__).parents[1] / "skill.yaml").read_text())["handlers"]
    assert {c["class_name"] for c in declared.values()} <= set(dir(handlers))
