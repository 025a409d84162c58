"""One byzantine agent among 4 real agents on 4 real Tendermint validators: one row per way it lies.

Agent 3 is a real agent started by ``settleproof.testing.byzantine`` (its own
node, its own ABCI app), whose outgoing payloads follow a mode a row switches
at run time. The service is started once for the module. Each row switches the
mode, creates fresh invoices, pays them on anvil and asserts what the
merchant must see whatever one agent of four does: every paid invoice
settled under its one id within ``SETTLE_TIMEOUT``, nothing for an invoice
nobody paid, no conflicting or unverifiable delivery; and that the honest
agents live on and their chain grows. Where the door should refuse the
lies, every honest agent's ``byzantine_payloads_total`` must have counted
them. Each step waits on an event (a log line, a metric, the merchant's
state); nothing sleeps to synchronize.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import pytest
from web3 import Web3

from settleproof.agent_logs import Record, event, parse
from settleproof.agent_runner import AgentProcess
from settleproof.anvil import Anvil
from settleproof.chaos import ChaosServer
from settleproof.devnet.agents import FrameworkSettings
from settleproof.devnet.network import Devnet
from settleproof.erc20 import deploy_token
from settleproof.merchant import MerchantServer, new_secret
from settleproof.service_env import settleproof_env
from settleproof.status import Samples
from settleproof.testing import byzantine
from tests.devnet_fixtures import AgentTemplates, devnet_templates  # noqa: F401  # pylint: disable=unused-import
from tests.scrape import scrape, wait_for_metrics
from tests.test_e2e_bft import Payments, heights


pytestmark = pytest.mark.e2e
BYZANTINE = 3
HONEST = (0, 1, 2)
FAST = FrameworkSettings(round_timeout=15.0, reset_pause_duration=10)
#: Start-up and preconditions (a period with the right keeper): generous, they are not what a row tests.
TIMEOUT = 180.0
#: What a row promises: a paid invoice reaches the merchant within this, whatever the byzantine agent does.
SETTLE_TIMEOUT = 90.0
INVOICES_PER_ROW = 3
REFUSALS = "byzantine_payloads_total"


@dataclass
class Service:
    """The running service and everything every row paid (a webhook for anything else is false)."""

    net: Devnet
    w3: Web3
    token: str
    merchant: MerchantServer
    paid: Set[str] = field(default_factory=set)

    @property
    def folder(self) -> Path:
        """The byzantine agent's folder (where its mode file lives)."""
        return self.net.slots[BYZANTINE].folder

    def agent(self, index: int) -> AgentProcess:
        """Agent ``index``'s current process."""
        return self.net.agent(index)


@pytest.fixture(scope="module")
def service(devnet_templates: AgentTemplates,  # noqa: F811  # pylint: disable=redefined-outer-name
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """anvil (1 s blocks), a token, the merchant, 4 agents on 4 validators with agent 3 byzantine, registered."""
    secret = new_secret()
    with Anvil(block_time=1) as chain, MerchantServer(secret) as merchant, ExitStack() as proxies:
        w3 = Web3(Web3.HTTPProvider(chain.url, request_kwargs={"timeout": 30}))
        token = deploy_token(w3)
        # Two providers of one anvil: honest proxies on ports of their own (one host:port is one provider).
        providers = [proxies.enter_context(ChaosServer(chain.url)).url for _ in range(2)]
        env = settleproof_env(providers, token, merchant, secret, 2, w3.eth.block_number)
        root = tmp_path_factory.mktemp("byzantine-devnet")
        devnet_templates.copy_to(root, 4)
        net = Devnet(4, root, env=env, settings=FAST, commands={BYZANTINE: byzantine.command()})
        try:
            net.prepare(refresh=False)
            net.start()
            net.wait_registered(timeout=TIMEOUT)
            yield Service(net, w3, token, merchant)
        finally:
            net.stop()


def fresh(process: AgentProcess, found: Callable[[str], Any]) -> Callable[[str], Any]:
    """``found``, for lines the agent prints from now on (``wait_for`` reads every line from the first)."""
    old = len(process.lines)
    seen = [0]

    def check(line: str) -> Any:
        seen[0] += 1
        return found(line) if seen[0] > old else None

    return check


def refusals(samples: Samples) -> Dict[Tuple[str, str], float]:
    """``byzantine_payloads_total`` per (round, reason)."""
    return {(labels.get("round", ""), labels.get("reason", "")): value for labels, value in samples.get(REFUSALS, [])}


class RowPayments(Payments):
    """One row's invoices, paid one at a time, on the shared merchant."""

    def __init__(self, service: Service) -> None:
        """Nothing paid yet in this row."""
        super().__init__(service.w3, service.token, service.merchant)
        self.service = service

    def pay(self) -> int:
        """Create an invoice and pay it; remember the payment for every later row too."""
        block = super().pay()
        self.service.paid.add(self.expected[-1])
        return block

    def invoices(self) -> Set[str]:
        """The uuids paid in this row."""
        return {expected.rsplit(":", 1)[0] for expected in self.expected}

    def wait_settled(self, step: str) -> None:
        """Every invoice of this row at the merchant within SETTLE_TIMEOUT, then exactly its one id."""
        mine = self.invoices()
        self.merchant.wait_until(
            lambda m: mine <= {e["invoice_uuid"] for e in m.events()}, SETTLE_TIMEOUT,
            f"{step}: {len(mine)} paid invoices at the merchant",
        )
        ids = sorted(e["id"] for e in self.merchant.events() if e["invoice_uuid"] in mine)
        assert ids == sorted(self.expected), f"{step}: one id per payment, each its own"

    def check_nothing_false(self) -> None:
        """Across all rows: no webhook for an invoice nobody paid, no second payment, nothing unverified."""
        report = self.merchant.report()
        false = [e["id"] for e in report["events"] if e["id"] not in self.service.paid]
        assert false == [], "webhooks for payments nobody made"
        assert report["rejected"] == 0 and report["conflicts"] == [] and report["unverified"] == []


@dataclass
class Row:
    """What a row starts from: the honest agents' refusal counts and their nodes' heights."""

    service: Service
    mode: str
    refused_before: List[Dict[Tuple[str, str], float]]
    heights_before: List[int]
    payments: RowPayments

    def check_honest_alive(self) -> None:
        """Every honest agent still runs and its node grew beyond where the row started."""
        for index, height in zip(HONEST, self.heights_before):
            process = self.service.agent(index).process
            assert process is not None and process.poll() is None, f"honest agent {index} exited"
            self.service.net.node(index).wait_height(height + 1, timeout=TIMEOUT)

    def wait_refused(self, rounds: Set[str], reason: Optional[str] = None) -> None:
        """Every honest agent counted a refusal (of ``reason``, if given) in each of ``rounds`` since the row began."""
        for index, before in zip(HONEST, self.refused_before):
            def grew(samples: Samples, before: Dict[Tuple[str, str], float] = before) -> bool:
                now = refusals(samples)
                up = {key for key, value in now.items() if value > before.get(key, 0.0)}
                return rounds <= {r for r, why in up if reason in (None, why)}

            wait_for_metrics(self.service.net.metrics_url(index), grew, timeout=SETTLE_TIMEOUT)


def start_row(service: Service, mode: str) -> Row:
    """Switch the byzantine agent to ``mode`` (it must be running), after taking the honest agents' baseline."""
    process = service.agent(BYZANTINE).process
    assert process is not None and process.poll() is None, "the byzantine agent exited in an earlier row"
    before = [refusals(scrape(service.net.metrics_url(index))) for index in HONEST]
    row = Row(service, mode, before, heights(service.net, HONEST), RowPayments(service))
    byzantine.set_mode(service.folder, mode)
    return row


@pytest.fixture
def row_of(service: Service) -> Iterator[Callable[[str], Row]]:  # pylint: disable=redefined-outer-name
    """``row_of(mode)`` starts a row; afterwards the byzantine agent is honest again and nothing false arrived."""
    rows: List[Row] = []

    def start(mode: str) -> Row:
        rows.append(start_row(service, mode))
        return rows[-1]

    yield start
    byzantine.set_mode(service.folder, "honest")
    for row in rows:
        row.payments.check_nothing_false()


def tampered(service: Service, mode: str, payload: Optional[str] = None, turn: int = 0) -> Callable[[str], Any]:
    """From now on: the byzantine agent saying it sent a payload rewritten by ``mode`` (of class
    ``payload``, and at least its ``turn``-th such payload, if given)."""

    def found(line: str) -> Optional[Record]:
        record = parse(line)
        if record is None or record.get("message") != "byzantine payload sent" or record.get("mode") != mode:
            return None
        if payload is not None and (record.get("payload") != payload or record.get("turn", -1) < turn):
            return None
        return record

    return fresh(service.agent(BYZANTINE), found)


def pay_and_settle(row: Row, lie: Callable[[str], Any]) -> None:
    """Pay this row's invoices, each in its own tx, while the byzantine agent tells ``lie`` (awaited:
    the attack landed while they were pending); all settle, once each; the honest agents live on."""
    for _ in range(INVOICES_PER_ROW):
        row.payments.pay()
    row.service.agent(BYZANTINE).wait_for(lie, TIMEOUT, f"the byzantine agent lying ({row.mode})")
    row.payments.wait_settled(row.mode)
    row.payments.check_nothing_false()
    row.check_honest_alive()


def test_honest_launcher_is_just_an_agent(row_of: Callable[[str], Row]) -> None:
    """The launcher in honest mode changes nothing: its payments settle once, nothing is refused."""
    row = row_of("honest")
    for _ in range(INVOICES_PER_ROW):
        row.payments.pay()
    row.payments.wait_settled("honest")
    row.payments.check_nothing_false()
    row.check_honest_alive()
    after = [refusals(scrape(row.service.net.metrics_url(index))) for index in HONEST]
    assert after == row.refused_before


def test_garbage_in_every_field_is_refused_at_the_door(row_of: Callable[[str], Row]) -> None:
    """Junk of every shape in every payload (JSON nested 100,000 deep, 200 kB strings, ``[{"id": 1}]``
    as a report, wrong types): every honest agent refuses it in each round and the service goes on
    with 3 of 4. The row lasts until the first three variants of each have been sent."""
    row = row_of("garbage")
    pay_and_settle(row, tampered(row.service, "garbage"))
    third = tampered(row.service, "garbage", "CheckpointPayload", turn=2)
    row.service.agent(BYZANTINE).wait_for(third, TIMEOUT, "three periods of garbage")
    row.wait_refused({"select_keeper_round", "fetch_logs_quorum_round", "dedupe_round", "checkpoint_round"})
    row.check_honest_alive()


def test_future_block_time_is_refused(row_of: Callable[[str], Row]) -> None:
    """Dedupe votes and delivery results stamped a year ahead: refused as the wrong time; payments settle."""
    row = row_of("future_time")
    pay_and_settle(row, tampered(row.service, "future_time", "DedupePayload"))
    row.wait_refused({"dedupe_round"}, reason="wrong_time")


def test_an_observation_that_omits_every_payment(row_of: Callable[[str], Row]) -> None:
    """One agent hides every payment it sees: the three that report them settle them."""
    row = row_of("omit")
    pay_and_settle(row, tampered(row.service, "omit", "FetchLogsQuorumPayload"))


def test_an_observation_of_nothing(row_of: Callable[[str], Row]) -> None:
    """One agent claims it could scan nothing (``to_block = from_block - 1``): the others' range goes on."""
    row = row_of("tiny_range")
    pay_and_settle(row, tampered(row.service, "tiny_range", "FetchLogsQuorumPayload"))


def test_an_invented_invoice_and_payment(row_of: Callable[[str], Row]) -> None:
    """One agent lists a made-up invoice with a made-up payment in a one-block range: no webhook for it,
    and the real payments settle."""
    row = row_of("invent")
    pay_and_settle(row, tampered(row.service, "invent", "FetchLogsQuorumPayload"))
    invented = {e["invoice_uuid"] for e in row.service.merchant.events() if e["invoice_uuid"].startswith("invented-")}
    assert invented == set()


def keeper_predicate(address: str) -> Callable[[str], Optional[Record]]:
    """A ``keeper selected`` line naming ``address`` (addresses compared case-insensitively)."""

    def found(line: str) -> Optional[Record]:
        record = parse(line)
        if record and record.get("message") == "keeper selected" and str(record.get("keeper", "")).lower() == address:
            return record
        return None

    return found


def pay_while_byzantine_keeps(row: Row) -> None:
    """Pay so the payments are first due in a period the byzantine agent keeps.

    Keepers take turns, ``sorted(participants)[period % n]``; payments made after the period before its
    turn scanned are first agreed, and due, in its period (a period lasts far longer than the two
    confirmations).
    """
    net, watcher = row.service.net, row.service.agent(0)
    order = sorted(net.addresses)  # as `keeper_for` sorts them: checksummed, case-sensitive
    before = order[(order.index(net.addresses[BYZANTINE]) - 1) % len(order)].lower()
    selected = watcher.wait_for(fresh(watcher, keeper_predicate(before)), TIMEOUT, "the turn before the byzantine keeper")
    watcher.wait_for(fresh(watcher, event("observed", period=selected["period"])), TIMEOUT, "that period's scan")
    for _ in range(INVOICES_PER_ROW):
        row.payments.pay()


def false_claims(row: Row) -> Callable[[str], Optional[Record]]:
    """From now on: the byzantine keeper claiming (some of) this row's events without POSTing them."""

    def claimed(line: str) -> Optional[Record]:
        record = parse(line)
        if record and record.get("message") == "byzantine delivery claimed" and (
            set(row.payments.expected) & set(record.get("event_ids", []))
        ):
            return record
        return None

    return fresh(row.service.agent(BYZANTINE), claimed)


@pytest.mark.parametrize("mode", ["false_delivery", "false_delivery_gone"])
def test_a_keeper_that_claims_deliveries_it_never_made(row_of: Callable[[str], Row], mode: str) -> None:
    """The keeper reports 200 (or 410) for every due event and POSTs nothing; the report is well formed.
    No single agent may lose a settlement: each paid invoice still reaches the merchant, under its one id
    (redelivered by a later keeper while the merchant still lists the invoice as open)."""
    row = row_of(mode)
    claims = false_claims(row)
    pay_while_byzantine_keeps(row)
    row.service.agent(BYZANTINE).wait_for(claims, TIMEOUT, "the byzantine keeper claiming this row's events")
    row.payments.wait_settled(mode)
    row.payments.check_nothing_false()
    row.check_honest_alive()

