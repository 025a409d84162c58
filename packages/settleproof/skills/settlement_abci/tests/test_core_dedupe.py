"""The Dedupe core: new events from agreed data, duplicates counted, and the digest agents vote on."""

import json

from packages.settleproof.skills.settlement_abci.agreement import Agreement, Payment
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.dedupe import MAX_OUTBOX_ENTRIES, derive_events, within_capacity
from packages.settleproof.skills.settlement_abci.tests.strategies import examples, make_invoice, make_transfer, tx_hash


RECEIVER = "0x" + f"{0xB1:040x}"


def paid(block: int, n: int, value: int = 10) -> Payment:
    """A payment to RECEIVER in `block` by tx n."""
    transfer = make_transfer(block_number=block, log_index=n, tx_hash=tx_hash(n), value=value, receiver=RECEIVER)
    return Payment(transfer, 1_700_000_000 + block)


INVOICES = (make_invoice(uuid="inv-a", receiver=RECEIVER, amount=10), make_invoice(uuid="inv-b", receiver=RECEIVER, amount=10))


def test_events_carry_the_depth_and_the_block_and_are_sorted() -> None:
    """Two payments for two invoices: events sorted by id, each stamped with the configured depth
    and kept with its payment's block (for the processed key's retention)."""
    scan = Agreement(100, 110, (paid(107, 2), paid(105, 1)), INVOICES)
    derived = derive_events(scan, {}, 7)
    assert [e.id for e in derived.events] == [f"inv-a:{tx_hash(1)}", f"inv-b:{tx_hash(2)}"]
    assert [e.block_number for e in derived.events] == [105, 107]
    assert {json.loads(e.body)["data"]["confirmations"] for e in derived.events} == {7}
    assert derived.duplicates == 0


def test_re_scanned_payments_are_duplicates_and_settle_nothing_new() -> None:
    """A recovery re-scans blocks whose payments are processed: counted, never re-matched, even to
    another open invoice with the same terms."""
    scan = Agreement(100, 110, (paid(105, 1),), INVOICES[1:])  # inv-a is closed by now
    derived = derive_events(scan, {f"inv-a:{tx_hash(1)}": 105}, 12)
    assert derived.events == () and derived.duplicates == 1


def test_digest_is_the_events_and_only_them() -> None:
    """Same events, same digest; another depth (another body) or no events, another digest."""
    scan = Agreement(100, 110, (paid(105, 1),), INVOICES)
    assert derive_events(scan, {}, 12).digest == derive_events(scan, {}, 12).digest
    assert derive_events(scan, {}, 12).digest != derive_events(scan, {}, 6).digest
    assert derive_events(scan, {}, 12).digest != derive_events(Agreement(100, 110), {}, 12).digest


# --------------------------------------------------------------------------- outbox capacity


@examples(80)
@given(
    st.lists(st.tuples(st.integers(100, 110), st.integers(0, 3)), unique=True, max_size=30),
    st.integers(0, MAX_OUTBOX_ENTRIES + 5),
)
def test_a_full_outbox_stops_the_scan_before_what_does_not_fit(spec, waiting) -> None:  # type: ignore[no-untyped-def]
    """The cut scan yields a prefix (in chain order) of the whole scan's events that fits beside the
    `waiting` ones, cut at a block boundary; an empty outbox always takes the first busy block."""
    invoices = tuple(make_invoice(uuid=f"inv-{n:03d}", amount=1) for n in range(40))
    payments = tuple(
        Payment(make_transfer(block_number=block, log_index=index, tx_hash=tx_hash(block * 10 + index)), 0)
        for block, index in spec
    )
    agreement = Agreement(100, 110, payments, invoices)
    whole = derive_events(agreement, {}, 12)
    cut, events = within_capacity(agreement, {}, 12, waiting)
    assert events == derive_events(cut, {}, 12)
    by_block = sorted(whole.settlements, key=lambda s: (s.transfer.block_number, s.transfer.log_index))
    kept = [s for s in by_block if s.transfer.block_number <= cut.to_block]
    assert set(events.settlements) == set(kept)
    assert all(p.transfer.block_number <= cut.to_block for p in cut.payments)
    if not whole.events or len(whole.events) + waiting <= MAX_OUTBOX_ENTRIES:
        assert cut == agreement
        return
    assert cut.to_block < agreement.to_block
    assert not events.events or len(events.events) + waiting <= MAX_OUTBOX_ENTRIES or (
        waiting == 0 and {s.transfer.block_number for s in kept} == {by_block[0].transfer.block_number}
    )
    first_left = next(s for s in by_block if s.transfer.block_number > cut.to_block)
    assert cut.to_block == first_left.transfer.block_number - 1 or waiting == 0


def test_a_full_outbox_scans_nothing_new():
    """An outbox at capacity: the scan stops before the first block with a new event."""
    invoices = (make_invoice(uuid="inv-1", amount=1),)
    paid = Payment(make_transfer(block_number=105), 0)
    cut, events = within_capacity(Agreement(100, 110, (paid,), invoices), {}, 12, MAX_OUTBOX_ENTRIES)
    assert (cut, events.events) == (Agreement(100, 104, (), invoices), ())
