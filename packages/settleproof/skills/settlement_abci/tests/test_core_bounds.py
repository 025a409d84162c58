"""Bounds on what an agent carries in its observation: dust, invoice and payment counts, size.

The properties that matter: a transfer is left out as dust only if no open
invoice could take it (so matching, and the agreement across agents, never lose
a settlement to the filter), what a count or size bound leaves out lies beyond
the range the observation reports (deferred, never skipped), and the largest
observation an honest agent can build still passes the other agents' checks and
fits one consensus transaction.
"""

import json
from dataclasses import replace
from typing import List

from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci import payload_checks
from packages.settleproof.skills.settlement_abci.agreement import Observation, Payment, agree
from packages.settleproof.skills.settlement_abci.bounds import (
    MAX_OBSERVATION_BYTES,
    MAX_OPEN_INVOICES,
    MAX_PAYMENTS_PER_OBSERVATION,
    Payable,
    first_invoices,
    first_transfers,
    fit_observation,
)
from packages.settleproof.skills.settlement_abci.invoices import MAX_UUID_LENGTH, Invoice
from packages.settleproof.skills.settlement_abci.matching import match, pays
from packages.settleproof.skills.settlement_abci.payloads import FetchLogsQuorumPayload
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    SENDERS,
    address,
    chain_logs,
    examples,
    make_invoice,
    make_transfer,
    open_invoices,
    payment,
    transfers,
    tx_hash,
)
from packages.valory.skills.abstract_round_abci.base import Transaction


#: Tendermint's RPC reads a request line of at most 1 MiB (`max_header_bytes`; Go allows 4 KiB more),
#: and the framework sends a transaction in it hex-encoded: `broadcast_tx_sync?tx=0x<hex>`.
TENDERMINT_REQUEST_LINE = 1 << 20


# --------------------------------------------------------------------------- dust


@examples(200)
@given(open_invoices(), chain_logs(max_size=10))
def test_payable_is_exactly_whether_some_invoice_could_take_the_transfer(listed, logs):
    """`Payable` answers what `matching.pays` says for at least one invoice: token, receiver, payer, amount, block."""
    payable = Payable(listed)
    for transfer in logs:
        assert payable(transfer) == any(pays(invoice, transfer) for invoice in listed)


@examples(200)
@given(open_invoices(), chain_logs(max_size=10), st.sets(st.sampled_from(["inv-a", "inv-b", "inv-c"])))
def test_leaving_out_dust_never_changes_what_matching_settles(listed, logs, settled):
    """Matching on the payable transfers only gives the very same settlements."""
    payable = Payable(listed)
    assert match(listed, [t for t in logs if payable(t)], settled) == match(listed, logs, settled)


def test_dust_examples():
    """Below every amount, another sender than the payer, or before the invoice: dust. At the amount: kept."""
    cheap = make_invoice(uuid="cheap", amount=500)
    bound = make_invoice(uuid="bound", amount=100, payer=SENDERS[1])
    later = make_invoice(uuid="later", amount=10, created_block=105)
    payable = Payable([cheap, bound, later])
    assert payable(make_transfer(value=500))
    assert not payable(make_transfer(value=499))  # from SENDERS[0]: only "cheap" (500) and "later" apply
    assert payable(make_transfer(value=100, sender=SENDERS[1]))  # the payer of "bound"
    assert not payable(make_transfer(value=99, sender=SENDERS[1]))
    assert not payable(make_transfer(value=10, block_number=105))  # "later" wants a block after 105
    assert payable(make_transfer(value=10, block_number=106))
    assert not payable(make_transfer(value=10**6, receiver=address(0xEE)))  # nobody's receiver
    assert not Payable([])(make_transfer())


@examples(200)
@given(
    open_invoices(max_size=6),
    st.lists(st.sets(st.integers(min_value=0, max_value=5), max_size=2), min_size=3, max_size=4),
    chain_logs(max_size=10),
    st.lists(st.integers(min_value=99, max_value=110), min_size=4, max_size=4),
)
def test_across_agents_dust_filtering_defers_but_never_loses_a_settlement(merchant, missed, logs, scanned_to):
    """Agents whose lists differ (each misses a few invoices, read before or after a change) each leave
    out what their own list cannot use.

    Whatever the agreement then settles in the range both versions cover is the
    same as without the filter; a settlement is only ever deferred (the filtered
    range stops before it), never skipped.
    """
    participants, threshold = 4, 3
    lists = [[i for n, i in enumerate(merchant) if n not in gaps] for gaps in missed]

    def observations(filtered: bool) -> List[Observation]:
        result = []
        for listed, to_block in zip(lists, scanned_to):
            payable = Payable(listed)
            seen = [t for t in logs if t.block_number <= to_block and (payable(t) or not filtered)]
            mine = {(i.token, i.receiver) for i in listed}
            seen = [t for t in seen if (t.token, t.receiver) in mine]  # what the receivers filter asks for
            result.append(Observation(100, to_block, tuple(payment(t) for t in seen), tuple(listed)))
        return result

    def settled(agreement):
        return match(agreement.invoices, [p.transfer for p in agreement.payments])

    plain = agree(observations(False), 100, threshold, participants)
    filtered = agree(observations(True), 100, threshold, participants)
    common = min(plain.to_block, filtered.to_block)
    assert [s for s in settled(filtered) if s.transfer.block_number <= common] == [
        s for s in settled(plain) if s.transfer.block_number <= common
    ]


# --------------------------------------------------------------------------- counts


@examples(100)
@given(open_invoices(max_size=6), st.integers(min_value=0, max_value=7), st.randoms())
def test_first_invoices_are_the_first_by_uuid_whatever_the_order(listed, limit, rnd):
    """Every agent keeps the same ones from the same list, in whatever order the merchant sent it."""
    shuffled = list(listed)
    rnd.shuffle(shuffled)
    kept, left_out = first_invoices(shuffled, limit)
    assert kept == tuple(sorted(listed, key=lambda i: i.uuid)[:limit])
    assert left_out == max(0, len(listed) - limit)


@examples(200)
@given(chain_logs(max_size=12), st.integers(min_value=0, max_value=12), st.integers(min_value=110, max_value=120))
def test_first_transfers_keep_whole_blocks_and_defer_the_rest(logs, limit, last):
    """At most `limit` kept, whole blocks only; everything left out lies after the range that is reported."""
    kept, covered, left_out = first_transfers(logs, last, limit)
    assert len(kept) <= limit and len(kept) + left_out == len(logs)
    assert kept == sorted(t for t in logs if t.block_number <= covered)  # nothing inside the range is dropped
    assert covered <= last
    if left_out:
        assert covered + 1 == min(t.block_number for t in logs if t not in kept)
    else:
        assert covered == last


def test_first_transfers_cut_before_the_block_of_the_first_one_left_out():
    """Three in block 101, two in 102, limit 4: block 102 goes whole, the range ends at 101."""
    logs = [make_transfer(block_number=b, log_index=i) for b, i in [(102, 1), (101, 0), (101, 1), (102, 0), (101, 2)]]
    kept, covered, left_out = first_transfers(logs, 110, 4)
    assert [t.position for t in kept] == [(101, 0), (101, 1), (101, 2)]
    assert (covered, left_out) == (101, 2)


# --------------------------------------------------------------------------- size


@examples(100)
@given(chain_logs(max_size=12, values=st.integers(min_value=1, max_value=2**256 - 1)), st.integers(400, 4000))
def test_fit_keeps_the_json_within_the_bound_and_only_defers(logs, max_bytes):
    """Within `max_bytes` (the invoices alone fit), payments kept by whole blocks, the rest after the range."""
    invoices = (make_invoice(),)
    observation = Observation(100, 120, tuple(payment(t) for t in logs), invoices, tx_hash(99))
    fitted, left_out = fit_observation(observation, max_bytes)
    assert len(fitted.to_json()) <= max_bytes or not fitted.payments
    assert (fitted.from_block, fitted.invoices, fitted.anchor_hash) == (100, invoices, tx_hash(99))
    assert fitted.to_block <= observation.to_block
    assert set(fitted.payments) == {p for p in observation.payments if p.transfer.block_number <= fitted.to_block}
    assert len(fitted.payments) + left_out == len(observation.payments)
    if left_out:
        # as many whole blocks as fit: one more block would not
        nxt = min(p.transfer.block_number for p in observation.payments if p not in fitted.payments)
        more = [p for p in observation.payments if p.transfer.block_number <= nxt]
        assert len(replace(fitted, to_block=nxt, payments=tuple(more)).to_json()) > max_bytes
    payload_checks.parse_observation(fitted.to_json())


def test_a_fitting_observation_is_returned_as_it_is():
    """Under the bound nothing changes."""
    observation = Observation(100, 110, (payment(make_transfer()),), (make_invoice(),))
    assert fit_observation(observation, MAX_OBSERVATION_BYTES) == (observation, 0)


def largest_invoice(n: int) -> Invoice:
    """An invoice of the largest shape the merchant format allows: longest uuid, amount, payer, block."""
    return Invoice(
        uuid=f"{n:0{MAX_UUID_LENGTH}d}", token=address(0xA1), receiver=address(0xB00000 + n),
        amount=2**256 - 1, payer=address(0xC00000 + n), created_block=2**63 - 2,
    )


def largest_payment(n: int) -> Payment:
    """A payment of the largest shape, each in a block of its own."""
    transfer = make_transfer(
        block_number=2**62 + n, log_index=2**62, tx_hash=tx_hash(n), block_hash=tx_hash(2**128 + n),
        token=address(0xA1), sender=address(0xD00000 + n), receiver=address(0xB00000 + n), value=2**256 - 1,
    )
    return Payment(transfer, payload_checks.MAX_UNIX_SECONDS)


def test_the_bounds_agree_with_what_the_other_agents_accept():
    """No honest observation is refused for its count or its size."""
    assert MAX_OPEN_INVOICES <= payload_checks.MAX_OBSERVED_INVOICES
    assert MAX_PAYMENTS_PER_OBSERVATION <= payload_checks.MAX_OBSERVED_PAYMENTS
    assert MAX_OBSERVATION_BYTES <= payload_checks.MAX_PAYLOAD_BYTES


def test_the_largest_honest_observation_is_accepted_and_fits_one_transaction():
    """MAX_OPEN_INVOICES and MAX_PAYMENTS_PER_OBSERVATION of the largest shapes, fitted: the other agents
    accept it, it still carries payments, and as a signed transaction it fits Tendermint's request line."""
    invoices = tuple(largest_invoice(n) for n in range(MAX_OPEN_INVOICES))
    payments = tuple(largest_payment(n) for n in range(MAX_PAYMENTS_PER_OBSERVATION))
    observation = Observation(2**62, 2**62 + MAX_PAYMENTS_PER_OBSERVATION, payments, invoices, tx_hash(1))
    fitted, left_out = fit_observation(observation, MAX_OBSERVATION_BYTES)
    assert 0 < left_out < len(payments) and fitted.payments  # the range still moves on
    text = fitted.to_json()
    assert len(text) <= MAX_OBSERVATION_BYTES
    assert payload_checks.parse_observation(text) == fitted
    payload = FetchLogsQuorumPayload(sender=address(0xAA), observation=text)
    transaction = Transaction(payload, "0x" + "ab" * 65).encode()
    request_line = f"GET /broadcast_tx_sync?tx=0x{transaction.hex()} HTTP/1.1"
    assert len(request_line) < TENDERMINT_REQUEST_LINE
    assert json.loads(transaction)["payload"]["observation"] == text
