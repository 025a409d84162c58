"""A byzantine agent for tests: the real agent, run as ``aea run`` runs it, with its outgoing payloads rewritten.

``python -m settleproof.testing`` (cwd: a fetched agent folder) does
what ``aea -s run --connections ...`` does, in-process, but once the agent is
built and before it starts, it patches two methods of the skill's classes in
this process only:

- ``SettlementBehaviour.finish(payload)``, through which every settlement
  behaviour sends its payload: the payload is rewritten by the current mode
  (``modes.mutate``) before it is signed and sent;
- ``DeliverWebhookBehaviour.deliver``: in a false-delivery mode the keeper
  reports every due event as answered (200, or 410) without POSTing anything.

The mode is read from ``<agent folder>/byzantine_mode`` each time a payload
leaves (absent or ``honest``: no change), so a test switches modes while the
agent runs (``set_mode``). The agent keeps its own node, its ABCI app and its
round checks: in this framework version CheckTx only decodes a transaction and
verifies its signature, so its crafted transactions enter every mempool and any
proposer's block as they are, and the round checks run at DeliverTx on every
agent, this one included. Its app state therefore stays the honest agents'
(the app hash is the synchronized state's hash), and it keeps taking part in
consensus while it lies. The agent's packages never import this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Generator, List, Tuple

from settleproof.testing.modes import FALSE_DELIVERY_MODES, HONEST, MODES, Facts, false_results, mutate

MODE_FILE = "byzantine_mode"
SKILL = "packages.settleproof.skills.settlement_abci"


def command() -> List[str]:
    """The argv that starts the byzantine agent in an agent folder (for ``AgentProcess``/``Devnet``)."""
    return [sys.executable, "-m", "settleproof.testing"]


def set_mode(folder: Path, mode: str) -> None:
    """Switch the agent in ``folder`` to ``mode`` from its next payload on (atomic, so it never reads half)."""
    if mode not in MODES:
        raise ValueError(f"unknown byzantine mode {mode!r}; known: {sorted(MODES)}")
    path = Path(folder) / MODE_FILE
    tmp = path.with_name(MODE_FILE + ".tmp")
    tmp.write_text(mode + "\n")
    os.replace(tmp, path)


def read_mode(folder: Path) -> str:
    """The current mode (``honest`` when the file is absent or names no known mode)."""
    try:
        mode = (Path(folder) / MODE_FILE).read_text().strip()
    except OSError:
        return HONEST
    return mode if mode in MODES else HONEST


class Tamperer:
    """The patched methods' state: the agent folder the mode is read from, and a count per mode and
    payload class (so ``garbage`` cycles through its variants, starting with the first)."""

    def __init__(self, folder: Path, behaviours: ModuleType) -> None:
        """Patch nothing yet; ``install()`` does."""
        self.folder = folder
        self.behaviours = behaviours
        self.turns: Dict[Tuple[str, str], int] = {}

    def install(self) -> None:
        """Wrap ``finish`` and ``deliver`` on the skill's classes (every later instance uses them)."""
        settlement = self.behaviours.SettlementBehaviour
        deliverer = self.behaviours.DeliverWebhookBehaviour
        honest_finish, honest_deliver = settlement.finish, deliverer.deliver
        tamperer = self

        def finish(behaviour: Any, payload: Any) -> Generator:
            yield from honest_finish(behaviour, tamperer.rewrite(behaviour, payload))

        def deliver(behaviour: Any, entries: Any, now: int) -> Generator:
            mode = read_mode(tamperer.folder)
            if mode not in FALSE_DELIVERY_MODES:
                return (yield from honest_deliver(behaviour, entries, now))
            claims = false_results([entry.id for entry in entries], FALSE_DELIVERY_MODES[mode], now)
            behaviour.log("warning", "byzantine delivery claimed", mode=mode, event_ids=[c["id"] for c in claims])
            return [tamperer.behaviours.DeliveryResult(**claim) for claim in claims]

        finish.__doc__, deliver.__doc__ = honest_finish.__doc__, honest_deliver.__doc__
        settlement.finish = finish
        deliverer.deliver = deliver

    def rewrite(self, behaviour: Any, payload: Any) -> Any:
        """``payload`` as the current mode has it: a new payload of the same class and sender."""
        mode = read_mode(self.folder)
        if mode == HONEST or mode in FALSE_DELIVERY_MODES:
            return payload
        kind = type(payload).__name__
        turn = self.turns.get((mode, kind), 0)
        self.turns[(mode, kind)] = turn + 1
        facts = Facts(
            block_time=self.behaviours.block_time(behaviour.round_sequence),
            tokens=tuple(behaviour.params.settings.token_addresses),
            turn=turn,
        )
        fields = mutate(mode, kind, dict(payload.data), facts)
        if fields == payload.data:
            return payload
        behaviour.log("warning", "byzantine payload sent", mode=mode, payload=kind, turn=turn)
        return type(payload)(sender=payload.sender, **fields)


def patch_on_build(folder: Path) -> None:
    """Make ``aea run`` install the tamperer right after it built the agent (the skill's modules are
    loaded by then, under the names the agent's own imports use)."""
    from aea.cli import run as aea_run  # pylint: disable=import-outside-toplevel

    build = aea_run._build_aea  # pylint: disable=protected-access

    def build_then_patch(*args: Any, **kwargs: Any) -> Any:
        agent = build(*args, **kwargs)
        Tamperer(folder, sys.modules[f"{SKILL}.behaviours"]).install()
        print(f"byzantine agent: payloads follow {folder / MODE_FILE} (now {read_mode(folder)})", flush=True)
        return agent

    aea_run._build_aea = build_then_patch  # pylint: disable=protected-access


def main() -> None:
    """``aea -s run --connections ...`` in this process, tampering installed."""
    from aea.cli.core import cli  # pylint: disable=import-outside-toplevel

    from settleproof.agent_runner import CONNECTIONS  # pylint: disable=import-outside-toplevel

    patch_on_build(Path.cwd())
    cli.main(args=["-s", "run", "--connections", CONNECTIONS], prog_name="aea")  # pylint: disable=no-value-for-parameter

