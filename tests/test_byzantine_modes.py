"""The byzantine agent's rewrites, checked against the skill's own door.

Each mode is a pure function of a payload's fields. What matters is how the
honest agents' parsers (``payload_checks``) take the result: ``garbage`` and
``future_time`` must be refused (or they would not test the door), the
well-formed lies (``omit``, ``invent``, ``tiny_range``, false delivery claims)
must pass it, so that only the rounds' agreement rules stand between them and
a decision. Every garbage variant must also travel: encode as the framework
encodes a transaction, within its size limit, and decode on the other side.
"""

# pylint: disable=missing-function-docstring

import json
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from packages.settleproof.skills.settlement_abci import payloads, settings_digest
from packages.settleproof.skills.settlement_abci.agreement import Observation, Payment
from packages.settleproof.skills.settlement_abci.handlers import decodable
from packages.settleproof.skills.settlement_abci.outbox import OutboxEntry, attempt_result, dumps
from packages.settleproof.skills.settlement_abci.payload_checks import (
    InvalidPayload,
    parse_checkpoint,
    parse_dedupe,
    parse_delivery_report,
    parse_failover,
    parse_keeper,
    parse_observation,
    parse_recovery,
    parse_settings,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import make_invoice, make_transfer, tx_hash
from packages.settleproof.skills.settlement_abci.webhook_retry import Backoff
from packages.valory.skills.abstract_round_abci.base import Transaction
from settleproof.testing import byzantine, modes
from settleproof.testing.modes import FUTURE_SECONDS, Facts, false_results, garbage_variants, mutate

NOW = 1_700_000_000
TOKEN = make_transfer().token
FACTS = Facts(block_time=NOW, tokens=(TOKEN.upper().replace("0X", "0x"),))
PARTICIPANTS = frozenset({"0x" + "a" * 40, "0x" + "b" * 40})
DUE = [OutboxEntry(f"inv-{n}:{tx_hash(n)}", "{}") for n in range(3)]
DUE_IDS = [entry.id for entry in DUE]


def observation(from_block: int = 100, to_block: int = 110) -> Observation:
    paid = [Payment(make_transfer(block_number=b, log_index=0), NOW - 60) for b in (100, 104, 110)]
    invoices = (make_invoice(uuid="inv-1"), make_invoice(uuid="inv-2", receiver="0x" + "e" * 40))
    return Observation(from_block, to_block, tuple(paid), invoices)


def honest_report() -> str:
    return dumps(attempt_result(entry, 200, "", None, NOW, Backoff()) for entry in DUE)


#: Each payload class's parser as its round calls it, on the fields of one payload.
PARSERS: Dict[str, Callable[[Dict[str, Any]], Any]] = {
    "RecoverStatePayload": lambda f: parse_recovery(f["state"]),
    "SelectKeeperPayload": lambda f: parse_keeper(f["keeper"], PARTICIPANTS),
    "FetchLogsQuorumPayload": lambda f: parse_observation(f["observation"]),
    "DedupePayload": lambda f: parse_dedupe(f["events_digest"], f["block_time"]),
    "DeliverWebhookPayload": lambda f: parse_delivery_report(f["delivery_report"], DUE_IDS, NOW),
    "KeeperFailoverPayload": lambda f: parse_failover(f["keeper"], f["failovers"], PARTICIPANTS),
    "CheckpointPayload": lambda f: parse_checkpoint(f["checkpoint"], f["block_hash"], f["state_digest"]),
}
GARBAGE = [(kind, turn, variant) for kind in PARSERS for turn in range(3)
           for variant in garbage_variants(kind, turn)]


@pytest.mark.parametrize("kind, turn, variant", GARBAGE, ids=[f"{k}-{t}-{n}" for n, (k, t, _) in enumerate(GARBAGE)])
def test_every_garbage_variant_is_refused_at_the_door(kind: str, turn: int, variant: Dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        PARSERS[kind](variant)


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_every_garbage_variant_travels_as_a_transaction(kind: str) -> None:
    """The framework must be able to send it, and an honest node to decode it, for the door to see it."""
    payload_class = getattr(payloads, kind)
    for turn in range(len(garbage_variants(kind, 0))):
        fields = mutate("garbage", kind, {}, Facts(NOW, (TOKEN,), turn=turn))
        assert set(fields) == set(garbage_variants(kind, 0)[0])
        payload = payload_class(sender="0x" + "a" * 40, **fields)
        encoded = Transaction(payload, "0x00").encode()
        assert decodable(encoded)
        assert Transaction.decode(encoded).payload.data.keys() == fields.keys()


def test_garbage_covers_every_payload_class_of_the_skill() -> None:
    sent = {name for name in dir(payloads) if name.endswith("Payload") and name != "BaseTxPayload"}
    assert sent == set(PARSERS)


def test_honest_leaves_every_payload_alone() -> None:
    fields = {"observation": observation().to_json()}
    assert mutate("honest", "FetchLogsQuorumPayload", fields, FACTS) == fields
    assert mutate("no such mode", "FetchLogsQuorumPayload", fields, FACTS) == fields


def lie(mode: str, seen: Observation) -> Observation:
    fields = mutate(mode, "FetchLogsQuorumPayload", {"observation": seen.to_json()}, FACTS)
    return parse_observation(fields["observation"])  # a well-formed lie passes the door


def test_omit_reports_the_range_without_its_payments() -> None:
    seen = observation()
    told = lie("omit", seen)
    assert (told.from_block, told.to_block, told.invoices) == (seen.from_block, seen.to_block, seen.invoices)
    assert told.payments == ()


def test_tiny_range_claims_nothing_could_be_scanned() -> None:
    told = lie("tiny_range", observation())
    assert (told.from_block, told.to_block, told.payments) == (100, 99, ())


def test_invent_adds_an_invoice_and_its_payment_in_a_one_block_range() -> None:
    seen = observation()
    told = lie("invent", seen)
    assert (told.from_block, told.to_block) == (100, 100)
    new_invoices = set(told.invoices or ()) - set(seen.invoices or ())
    (invented,) = new_invoices
    assert invented.token == TOKEN and invented.uuid.startswith("invented-")
    made_up = [p for p in told.payments if p.transfer.receiver == invented.receiver]
    assert len(made_up) == 1 and made_up[0].transfer.value == invented.amount
    assert made_up[0].transfer.block_number == 100
    # The real payment of block 100 keeps its block hash; later ones are outside the range now.
    assert {p for p in told.payments if p not in made_up} == {p for p in seen.payments if p.transfer.block_number == 100}
    assert lie("invent", seen).invoices != told.invoices  # a new uuid every time


def test_invent_works_without_invoices_or_payments_seen() -> None:
    told = lie("invent", Observation(7, 9, (), None))
    assert len(told.payments) == 1 and len(told.invoices or ()) == 1
    assert told.invoices[0].token == TOKEN  # type: ignore[index]


def test_observation_modes_leave_a_head_only_report_and_other_payloads_alone() -> None:
    head_only = Observation(-1, 120).to_json()
    for mode in ("omit", "invent", "tiny_range"):
        assert mutate(mode, "FetchLogsQuorumPayload", {"observation": head_only}, FACTS) == {"observation": head_only}
        assert mutate(mode, "DedupePayload", {"events_digest": "0" * 64, "block_time": NOW}, FACTS)["block_time"] == NOW


def test_future_time_is_refused_as_the_wrong_time() -> None:
    vote = mutate("future_time", "DedupePayload", {"events_digest": "0" * 64, "block_time": NOW}, FACTS)
    assert vote["block_time"] == NOW + FUTURE_SECONDS
    parse_dedupe(vote["events_digest"], vote["block_time"])  # in shape; the round compares it with its block time
    report = mutate("future_time", "DeliverWebhookPayload", {"delivery_report": honest_report()}, FACTS)
    with pytest.raises(InvalidPayload) as caught:
        parse_delivery_report(report["delivery_report"], DUE_IDS, NOW)
    assert caught.value.reason == "wrong_time"


def test_wrong_settings_are_well_formed_and_another_agents() -> None:
    """The digests pass the door and match no honest agent's: the round agrees on the others' (the
    agreement itself is a round test; RecoverState runs once at start, so no 4-validator row)."""
    honest = settings_digest.dumps({name: "ab" * 32 for name in settings_digest.CLASSES})
    lied = mutate("wrong_settings", "RecoverStatePayload", {"state": "{}", "settings": honest}, FACTS)
    assert parse_settings(lied["settings"]) != parse_settings(honest) and lied["state"] == "{}"
    assert mutate("wrong_settings", "SelectKeeperPayload", {"keeper": "x"}, FACTS) == {"keeper": "x"}


@pytest.mark.parametrize("status", [200, 410])
def test_false_delivery_claims_pass_the_door(status: int) -> None:
    claims = json.dumps(false_results(DUE_IDS, status, NOW))
    results = parse_delivery_report(claims, DUE_IDS, NOW)
    assert [r.status for r in results] == [status] * len(DUE_IDS)


def test_mode_file_round_trip(tmp_path: Path) -> None:
    assert byzantine.read_mode(tmp_path) == "honest"
    for mode in sorted(modes.MODES):
        byzantine.set_mode(tmp_path, mode)
        assert byzantine.read_mode(tmp_path) == mode
    with pytest.raises(ValueError):
        byzantine.set_mode(tmp_path, "wrong")
    (tmp_path / byzantine.MODE_FILE).write_text("half-writ")
    assert byzantine.read_mode(tmp_path) == "honest"
