"""The two systems `make demo-chaos` puts through one fault script: the naive baseline and SettleProof.

Both offer the same verbs, so the script (``demo_chaos``) reads the same for
each: ``start``, ``processed_through`` (it has read a block and POSTed what it
found), ``settle`` (and the events it still owes arrived), ``kill_mid_delivery``,
``recover``, ``restart_one``, ``stop``. Where a fault means nothing to the
baseline (a keeper), it gets the nearest equivalent (its own restart).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, List, Optional, Set, Tuple

from web3 import Web3

from settleproof.agent_logs import checkpoint_at_least, event, latest_keeper
from settleproof.agent_runner import SKILL_PARAMS
from settleproof.baseline import NaiveBaselinePoller
from settleproof.chaos import ChaosServer
from settleproof.devnet.agents import FrameworkSettings
from settleproof.devnet.network import Devnet
from settleproof.merchant import MerchantServer
from settleproof.service_env import settleproof_env

AGENTS = 4
CONFIRMATIONS = 3


@dataclass
class Stack:
    """What one run runs against: a fresh anvil, its token, three providers, the merchant."""

    w3: Web3
    token: str
    providers: List[ChaosServer]
    merchant: MerchantServer
    secret: str
    start_block: int
    stack: ExitStack


class BaselineRun:
    """The "before" column: `NaiveBaselinePoller` on the first provider only (the fabricating one)."""

    name = "baseline"

    def __init__(self, stack: Stack) -> None:
        """Nothing polls until `start()`."""
        self.stack = stack
        self.poller: Optional[NaiveBaselinePoller] = None
        self.retired: List[NaiveBaselinePoller] = []

    def _fresh(self) -> NaiveBaselinePoller:
        """A poller that knows nothing: it starts at the fixed start block again."""
        s = self.stack
        return NaiveBaselinePoller(s.providers[0].url, s.token, s.merchant.invoices_url,
                                   s.merchant.webhook_url, s.start_block).start()

    def start(self) -> None:
        """Start polling."""
        self.poller = self._fresh()

    def processed_through(self, block: int, timeout: float) -> None:
        """Its cursor passed `block`: it POSTed everything it will ever send for it."""
        assert self.poller is not None  # nosec B101
        self.poller.wait_past(block, timeout)

    def settle(self, event_ids: Collection[str], block: int, timeout: float) -> None:
        """One attempt only: once it read `block`, nothing more is coming (ids are its own, not ours)."""
        del event_ids
        self.processed_through(block, timeout)

    def kill_mid_delivery(self) -> str:
        """No keeper here: kill the poller while its POST hangs, and start it again (its restart)."""
        self._replace_poller(NaiveBaselinePoller.kill)
        return "killed the poller during its POST and started it again"

    def recover(self) -> None:
        """Nothing to bring back."""

    def restart_one(self) -> str:
        """Stop and start the poller: it forgets everything."""
        self._replace_poller(NaiveBaselinePoller.stop)
        return "restarted the poller"

    def _replace_poller(self, end: Callable[[NaiveBaselinePoller], None]) -> None:
        """End the running poller (`kill` or `stop`) and start a fresh one, which remembers nothing."""
        assert self.poller is not None  # nosec B101
        end(self.poller)
        self.retired.append(self.poller)
        self.poller = self._fresh()

    def stop(self) -> None:
        """Stop every poller this run started."""
        for poller in [*self.retired, *([self.poller] if self.poller else [])]:
            poller.stop()


class SettleProofRun:
    """The "after" column: the devnet with 4 real agents on all three providers (quorum 2)."""

    name = "SettleProof"

    def __init__(self, stack: Stack, data_dir: Path, echo: Callable[[str], None]) -> None:
        """Nothing runs until `start()`."""
        self.stack, self.data_dir, self.echo = stack, data_dir, echo
        self.devnet: Optional[Devnet] = None
        self.disturbed: Set[int] = set()  # agents killed or restarted: not watched for progress
        self.killed: Optional[int] = None
        self.rejoining: List[int] = []  # started again, not yet seen registering

    def start(self) -> None:
        """Start the devnet and wait until every agent registered."""
        s = self.stack
        env = settleproof_env([p.url for p in s.providers], s.token, s.merchant, s.secret,
                              CONFIRMATIONS, s.start_block)
        # short webhook backoff, so the 503 window costs seconds, not the default 30 s and up
        env[f"{SKILL_PARAMS}WEBHOOK_BACKOFF_BASE_SECONDS"] = "2.0"
        env[f"{SKILL_PARAMS}WEBHOOK_BACKOFF_CAP_SECONDS"] = "8.0"
        self.devnet = Devnet(AGENTS, self.data_dir, env=env,
                             settings=FrameworkSettings(round_timeout=15.0, reset_pause_duration=10))
        self.echo(f"  starting {AGENTS} agents in {self.data_dir} ...")
        s.stack.enter_context(self.devnet)
        self.devnet.wait_registered(timeout=300)

    def _net(self) -> Devnet:
        assert self.devnet is not None  # nosec B101
        return self.devnet

    def processed_through(self, block: int, timeout: float) -> None:
        """An undisturbed agent committed a checkpoint at or past `block`."""
        watcher = next(i for i in range(AGENTS) if i not in self.disturbed)
        self._net().agent(watcher).wait_for(checkpoint_at_least(block), timeout, f"a checkpoint past block {block}")

    def settle(self, event_ids: Collection[str], block: int, timeout: float) -> None:
        """Past `block`, and every expected event id verified at the merchant (retries included)."""
        self.processed_through(block, timeout)
        wanted = set(event_ids)
        self.stack.merchant.wait_until(
            lambda m: wanted <= {e["id"] for e in m.events()}, timeout, f"events {sorted(wanted)}")

    def keeper(self) -> Tuple[int, int]:
        """The latest period and the agent every agent named its keeper, from their logs."""
        net = self._net()
        period, address = latest_keeper(net.agent(index).lines for index in range(AGENTS))
        return period, [a.lower() for a in net.addresses].index(address)

    def kill_mid_delivery(self) -> str:
        """kill -9 the keeper once its log says it is delivering in the current period."""
        net = self._net()
        latest, keeper = self.keeper()

        def delivering(line: str) -> Optional[bool]:
            record = event("delivering")(line)
            return True if record is not None and record["period"] >= latest else None

        net.agent(keeper).wait_for(delivering, 10, "the keeper delivering")
        net.kill_agent(keeper)
        self.disturbed.add(keeper)
        self.killed = keeper
        return f"kill -9 of keeper agent{keeper} while it delivered (period {latest})"

    def recover(self) -> None:
        """Start the killed keeper again, and wait until every agent started again has rejoined."""
        if self.killed is not None:
            self._net().start_agent(self.killed)
            self.rejoining.append(self.killed)
            self.killed = None
        for index in self.rejoining:
            self._net().wait_registered(timeout=240, indices=[index])
            self.echo(f"  agent{index} rejoined")
        self.rejoining = []

    def restart_one(self) -> str:
        """Restart (clean stop, start) one agent that was not disturbed yet."""
        index = next(i for i in range(AGENTS) if i not in self.disturbed)
        self.disturbed.add(index)
        self._net().restart_agent(index)
        self.rejoining.append(index)
        return f"restarted agent{index}"

    def stop(self) -> None:
        """The devnet is stopped with the run's ExitStack."""
