"""Merchant invoices: bad entries skipped one by one, naming the field; good ones kept."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.invoices import (
    MAX_REPORTED_ERRORS,
    InvalidInvoice,
    Invoice,
    parse_invoice,
    parse_invoices,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    RECEIVERS,
    SENDERS,
    TOKENS,
    examples,
    invoice_entry,
    open_invoices,
)


BAD_FIELDS = {
    "uuid": [None, "", "   ", 42, "x" * 129, ["inv"]],
    "token": [None, "0x123", TOKENS[0][:-1] + "g", 1, TOKENS[0] + "\n", TOKENS[0][2:]],
    "receiver": [None, "", RECEIVERS[0] + "00", "0X" + RECEIVERS[0][2:]],
    "amount": [None, 1000, 10.5, "", "-5", "1e3", "0x10", "0", str(2**256), "1 000", "12\n", "١٢"],
    "payer": ["", "0x12", 7, SENDERS[0] + "\n"],
    "created_block": ["12", -1, 1.5, True, False],
}
BAD_CASES = [(field, value) for field, values in BAD_FIELDS.items() for value in values]


@pytest.mark.parametrize("field,value", BAD_CASES, ids=[f"{f}={v!r}" for f, v in BAD_CASES])
def test_each_malformed_field_is_named(field, value):
    """parse_invoice refuses the entry and names the field; parse_invoices skips only it."""
    with pytest.raises(InvalidInvoice, match=f"field '{field}'"):
        parse_invoice(invoice_entry(**{field: value}))
    good = invoice_entry(uuid="inv-good")
    bad = invoice_entry(**{field: value, **({} if field == "uuid" else {"uuid": "inv-bad"})})
    invoices, errors = parse_invoices([bad, good])
    assert [i.uuid for i in invoices] == ["inv-good"]
    assert len(errors) == 1
    assert f"field '{field}'" in errors[0] and "#0" in errors[0]


def test_missing_required_field_is_named():
    """A missing key is as bad as a malformed one."""
    for field in ("uuid", "token", "receiver", "amount"):
        entry = invoice_entry()
        del entry[field]
        with pytest.raises(InvalidInvoice, match=f"field '{field}'"):
            parse_invoice(entry)


def test_optional_fields_may_be_null_or_absent_and_addresses_are_lowercased():
    """payer/created_block null or absent; mixed-case addresses normalised for matching."""
    entry = {"uuid": "inv-1", "token": TOKENS[0].upper().replace("0X", "0x"),
             "receiver": "0x" + RECEIVERS[0][2:].upper(), "amount": "2" + "0" * 70}
    invoice = parse_invoice(entry)
    assert invoice == Invoice("inv-1", TOKENS[0], RECEIVERS[0], 2 * 10**70, None, None)
    full = parse_invoice(invoice_entry(payer=SENDERS[1].upper().replace("0X", "0x"), created_block=0))
    assert full.payer == SENDERS[1] and full.created_block == 0


def test_extra_fields_are_ignored():
    """Unknown fields never make an entry invalid nor change it."""
    plain = parse_invoice(invoice_entry())
    extra = {"currency": "USDC", "amount_usd": 1.0, "meta": {"a": [1]}, "uuid_v2": None}
    assert parse_invoice({**invoice_entry(), **extra}) == plain


@examples(60)
@given(
    open_invoices(),
    st.lists(st.sampled_from(sorted(BAD_CASES, key=repr)), max_size=4),
    st.randoms(use_true_random=False),
)
def test_valid_entries_survive_any_mix_of_bad_ones(invoices, bad_cases, rnd):
    """However the list mixes good and bad entries, exactly the good ones come back, sorted."""
    document = [{**i.to_json(), "note": "extra"} for i in invoices]
    for n, (field, value) in enumerate(bad_cases):
        document.append(invoice_entry(**{"uuid": f"bad-{n}", field: value}))
    document.append("not an object")
    rnd.shuffle(document)
    parsed, errors = parse_invoices(document)
    assert parsed == sorted(invoices)
    assert len(errors) == len(bad_cases) + 1


def test_duplicated_uuid_keeps_neither_copy():
    """A uuid listed twice is ambiguous: both copies are dropped, others kept."""
    document = [
        invoice_entry(uuid="inv-dup", amount="10"),
        invoice_entry(uuid="inv-ok"),
        invoice_entry(uuid="inv-dup", amount="20"),
        invoice_entry(uuid="inv-dup", amount="30"),
    ]
    invoices, errors = parse_invoices(document)
    assert [i.uuid for i in invoices] == ["inv-ok"]
    assert len(errors) == 2 and all("listed twice" in e for e in errors)


@pytest.mark.parametrize("document", [{"invoices": []}, "[]", None, 3, {"uuid": "inv-1"}])
def test_a_reply_that_is_not_a_list_raises(document):
    """The whole reply is unusable: the caller treats the invoices as unavailable."""
    with pytest.raises(InvalidInvoice, match="not a JSON array"):
        parse_invoices(document)


def test_empty_list_is_valid():
    """No open invoices is an answer, not an error."""
    assert parse_invoices([]) == ([], [])


@examples(40)
@given(open_invoices())
def test_invoice_json_round_trip(invoices):
    """Invoice.to_json is the merchant format; parsing it gives the same invoice."""
    for invoice in invoices:
        data = invoice.to_json()
        assert isinstance(data["amount"], str)
        assert parse_invoice(data) == invoice
        assert Invoice.from_json(data) == invoice


@pytest.mark.parametrize("uuid", ["inv\r\nX-Injected: 1", "inv 1", "inv\t1", "inv/1", "", "é", "u" * 129, "inv\x00"])
def test_uuids_that_could_reach_a_header_unsafely_are_skipped(uuid: str) -> None:
    """A uuid becomes the webhook id, sent in headers: CR/LF, spaces and the like never get there."""
    with pytest.raises(InvalidInvoice, match="field 'uuid'"):
        parse_invoice(invoice_entry(uuid=uuid))


@pytest.mark.parametrize("uuid", ["inv-1", "9b2c0f4e-1d7a-4c1e-8f5e-0a2b3c4d5e6f", "order:2026.11_A~1", "u" * 128])
def test_url_safe_uuids_pass(uuid: str) -> None:
    """UUIDs, slugs and `kind:number` ids are all fine."""
    assert parse_invoice(invoice_entry(uuid=uuid)).uuid == uuid


def test_a_flood_of_bad_entries_gives_a_bounded_report():
    """10,000 malformed entries (and one with a megabyte-long field): the first few described, each line
    short, then one line counting the rest; the good entry is still kept."""
    document = [invoice_entry(uuid=f"bad-{n}", amount="ten") for n in range(10_000)]
    document.insert(5, invoice_entry(uuid="huge", token="0x" + "f" * 1_000_000))
    document.append(invoice_entry(uuid="inv-good"))
    invoices, errors = parse_invoices(document)
    assert [i.uuid for i in invoices] == ["inv-good"]
    assert len(errors) == MAX_REPORTED_ERRORS + 1
    assert all(len(line) < 500 for line in errors)
    assert errors[-1] == f"{10_001 - MAX_REPORTED_ERRORS} more invoice entries skipped (10001 in all)"
