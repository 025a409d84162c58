"""The Dedupe core: new events from agreed data, duplicates counted, and the digest agents vote on."""

import json

from packages.settleproof.skills.settlement_abci.agreement import Agreement, Payment
from packages.settleproof.skills.settlement_abci.dedupe import derive_events
from packages.settleproof.skills.settlement_abci.tests.strategies import make_invoice, make_transfer, tx_hash


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
