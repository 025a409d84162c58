"""Invoice matching: one-to-one, order-independent, maximal, and the README's tie rule."""

from typing import Dict, FrozenSet, List, Sequence

from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.invoices import Invoice
from packages.settleproof.skills.settlement_abci.matching import Settlement, match, pays
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    RECEIVERS,
    SENDERS,
    TOKENS,
    UUIDS,
    chain_logs,
    examples,
    make_invoice,
    make_transfer,
    open_invoices,
)
from packages.settleproof.skills.settlement_abci.transfers import Transfer


FAST = examples(80)
settled_uuids = st.frozensets(st.sampled_from(UUIDS), max_size=3)


def reference_match(
    invoices: Sequence[Invoice], logs: Sequence[Transfer], settled: FrozenSet[str]
) -> List[Settlement]:
    """The contract's rule spelled out: logs in (block, log index) order, each to the
    smallest-uuid invoice it pays that is still open."""
    free = {i.uuid: i for i in invoices if i.uuid not in settled}
    result = []
    for log in sorted(logs, key=lambda t: (t.block_number, t.log_index)):
        eligible = [uuid for uuid, invoice in free.items() if pays(invoice, log)]
        if eligible:
            chosen = free.pop(min(eligible))
            result.append(Settlement(chosen, log))
    return result


@FAST
@given(open_invoices(), chain_logs(), settled_uuids)
def test_one_to_one_and_every_settlement_pays(invoices, logs, settled):
    """Each invoice and each log at most once; every pair satisfies the invoice's terms."""
    settlements = match(invoices, logs, settled)
    uuids = [s.invoice.uuid for s in settlements]
    positions = [s.transfer.position for s in settlements]
    assert len(set(uuids)) == len(uuids)
    assert len(set(positions)) == len(positions)
    for settlement in settlements:
        assert pays(settlement.invoice, settlement.transfer)
        assert settlement.invoice in invoices and settlement.transfer in logs
        assert settlement.invoice.uuid not in settled


@FAST
@given(open_invoices(), chain_logs(), settled_uuids, st.randoms(use_true_random=False))
def test_independent_of_input_order(invoices, logs, settled, rnd):
    """Shuffling invoices and logs (and passing duplicates) never changes the result."""
    expected = match(invoices, logs, settled)
    shuffled_invoices, shuffled_logs = list(invoices) * 2, list(logs) * 2
    rnd.shuffle(shuffled_invoices)
    rnd.shuffle(shuffled_logs)
    assert match(shuffled_invoices, shuffled_logs, settled) == expected
    assert match(iter(shuffled_invoices), iter(shuffled_logs), set(settled)) == expected


@FAST
@given(open_invoices(), chain_logs(), settled_uuids)
def test_maximal(invoices, logs, settled):
    """No eligible (invoice, log) pair is left where neither side was used."""
    settlements = match(invoices, logs, settled)
    used_invoices = {s.invoice.uuid for s in settlements} | set(settled)
    used_logs = {s.transfer for s in settlements}
    for invoice in invoices:
        for log in logs:
            if invoice.uuid not in used_invoices and log not in used_logs:
                assert not pays(invoice, log), (invoice, log)


@FAST
@given(open_invoices(), chain_logs(), settled_uuids)
def test_tie_rule_earliest_log_first_then_smallest_uuid(invoices, logs, settled):
    """Matches the contract's greedy rule exactly."""
    assert sorted(match(invoices, logs, settled)) == sorted(
        reference_match(invoices, logs, settled)
    )


def test_earliest_log_wins_and_smallest_uuid_breaks_ties():
    """Two identical invoices, three payments: the two earliest logs pay inv-a then inv-b."""
    inv_b, inv_a = make_invoice(uuid="inv-b"), make_invoice(uuid="inv-a")
    late = make_transfer(block_number=101, log_index=0)
    early_second = make_transfer(block_number=100, log_index=3)
    early_first = make_transfer(block_number=100, log_index=1)
    settlements = match([inv_b, inv_a], [late, early_second, early_first])
    assert [(s.invoice.uuid, s.transfer) for s in settlements] == [
        ("inv-a", early_first),
        ("inv-b", early_second),
    ]


def test_settled_invoice_is_never_matched_again():
    """An invoice the merchant still lists as open stays settled."""
    invoice = make_invoice(uuid="inv-a")
    assert match([invoice], [make_transfer()], settled_invoices={"inv-a"}) == []
    assert match([invoice], [make_transfer()], settled_invoices={"inv-b"}) != []


def test_one_log_pays_one_invoice_even_if_it_covers_two():
    """A payment of twice the amount settles a single invoice."""
    settlements = match(
        [make_invoice(uuid="inv-a", amount=500), make_invoice(uuid="inv-b", amount=500)],
        [make_transfer(value=1000)],
    )
    assert [s.invoice.uuid for s in settlements] == ["inv-a"]


def test_pays_checks_every_term():
    """Token, receiver, amount, payer and created_block each can refuse a log."""
    invoice = make_invoice(payer=SENDERS[0], created_block=99, amount=1000)
    good = make_transfer(block_number=100, value=1000)
    assert pays(invoice, good)
    assert pays(invoice, make_transfer(block_number=100, value=5000))  # overpayment is fine
    refusals: Dict[str, Transfer] = {
        "token": make_transfer(block_number=100, token=TOKENS[1]),
        "receiver": make_transfer(block_number=100, receiver=RECEIVERS[1]),
        "amount": make_transfer(block_number=100, value=999),
        "payer": make_transfer(block_number=100, sender=SENDERS[1]),
        "created_block": make_transfer(block_number=99),
    }
    for term, log in refusals.items():
        assert not pays(invoice, log), term
    assert pays(make_invoice(payer=None, created_block=None), make_transfer(sender=SENDERS[1]))


def test_settlement_key_is_uuid_and_tx_hash():
    """The idempotency key (and webhook id) of the README."""
    log = make_transfer()
    assert Settlement(make_invoice(uuid="inv-7"), log).key == f"inv-7:{log.tx_hash}"
