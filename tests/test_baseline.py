"""The naive baseline of `make demo-chaos`: its matching, and its real failures against anvil + merchant."""

from typing import Iterator, List

import pytest
from eth_account import Account
from web3 import Web3

from settleproof.baseline import NaiveBaselinePoller, naive_matches
from settleproof.chaos import ChaosServer
from settleproof.demo_chaos import chain_logs
from settleproof.erc20 import transfer
from settleproof.merchant import Merchant, MerchantServer, new_secret
from settleproof.scorecard import Invoice, receipts_from_report, score, true_settlements

TOKEN, SHOP, PAYER = "0x" + "70" * 20, "0x" + "51" * 20, "0x" + "aa" * 20


def raw_log(to: str, value: int, tx: str, sender: str = PAYER) -> dict:
    """A decoded log as the poller sees it."""
    return {"token": TOKEN, "from": sender, "to": to, "value": value, "tx_hash": tx, "log_index": 0,
            "block_number": 1, "block_hash": "0x" + "00" * 32}


def invoice(uid: str, amount: int = 1000, payer=None, to: str = SHOP) -> dict:
    """An invoice as the merchant lists it."""
    return {"uuid": uid, "token": TOKEN, "receiver": to, "amount": str(amount), "payer": payer, "created_block": None}


def test_naive_matching_settles_two_equal_invoices_with_one_payment() -> None:
    """Every log against every invoice, no one-to-one rule."""
    matches = naive_matches([raw_log(SHOP, 1000, "0x1")], [invoice("a"), invoice("b")])
    assert [(inv["uuid"], log["tx_hash"]) for inv, log in matches] == [("a", "0x1"), ("b", "0x1")]


def test_naive_matching_settles_an_invoice_again_on_a_second_payment() -> None:
    """No memory of settled invoices."""
    matches = naive_matches([raw_log(SHOP, 1000, "0x1"), raw_log(SHOP, 1000, "0x2")], [invoice("a")])
    assert [log["tx_hash"] for _, log in matches] == ["0x1", "0x2"]


def test_naive_matching_still_checks_terms() -> None:
    """Too little, the wrong receiver or the wrong payer match nothing."""
    logs = [raw_log(SHOP, 999, "0x1"), raw_log("0x" + "52" * 20, 1000, "0x2"), raw_log(SHOP, 1000, "0x3")]
    assert not naive_matches(logs, [invoice("a", payer="0x" + "bb" * 20)])
    assert [log["tx_hash"] for _, log in naive_matches(logs, [invoice("a", payer=PAYER.upper())])] == ["0x3"]


@pytest.fixture
def lenient_merchant() -> Iterator[MerchantServer]:
    """A merchant that accepts unsigned requests and counts them as unverifiable."""
    with MerchantServer(merchant=Merchant(new_secret(), accept_unverified=True)) as server:
        yield server


def poller(url: str, token: str, merchant: MerchantServer, start: int) -> NaiveBaselinePoller:
    """A fresh baseline poller: it knows nothing and starts at `start`."""
    return NaiveBaselinePoller(url, token, merchant.invoices_url, merchant.webhook_url, start)


def scored(w3: Web3, token: str, merchant: MerchantServer, invoices: List[dict], start: int):
    """The scorecard of what the merchant received so far."""
    terms = [Invoice(i["uuid"], i["token"], i["receiver"], int(i["amount"])) for i in invoices]
    return score(receipts_from_report(merchant.report()), true_settlements(terms, chain_logs(w3, token, start)))


def test_baseline_resends_under_a_new_id_after_a_restart_and_loses_an_event_to_a_503(
    w3: Web3, token: str, anvil, lenient_merchant: MerchantServer,
) -> None:
    """A restart re-reads from the fixed start block (same payment, new id); one 503 and the event is gone."""
    merchant, start = lenient_merchant, w3.eth.block_number + 1
    shops = [Account.create().address for _ in range(2)]
    invoices = [merchant.add_invoice(token=token, receiver=shop, amount="1000") for shop in shops]
    paid = transfer(w3, token, w3.eth.accounts[1], shops[0], 1000)

    first = poller(anvil.url, token, merchant, start).start()
    first.wait_past(paid.block_number, timeout=30)
    first.stop()
    second = poller(anvil.url, token, merchant, start)  # the restart: everything forgotten
    assert second.poll_once() == 1
    ids = [u["id"] for u in merchant.report()["unverified"]]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert {u["tx_hash"] for u in merchant.report()["unverified"]} == {paid.tx_hash}

    merchant.fail(503, count=1)
    lost = transfer(w3, token, w3.eth.accounts[2], shops[1], 1000)
    assert second.poll_once() == 1 and second.sent[-1][1] == 503
    assert second.poll_once() == 0  # never tried again
    result = scored(w3, token, merchant, invoices, start)
    assert (result.invoices_paid, result.settled_correctly, result.lost_events) == (2, 1, 1)
    assert (result.duplicate_new_ids, result.unverifiable, result.false_settlements) == (1, 2, 0)
    assert merchant.invoice(invoices[1]["uuid"])["status"] == "open" and lost.tx_hash


def test_baseline_believes_a_payment_its_one_provider_fabricated(
    w3: Web3, token: str, anvil, lenient_merchant: MerchantServer,
) -> None:
    """One provider, no quorum: a fabricated Transfer settles an invoice nobody paid."""
    merchant, start = lenient_merchant, w3.eth.block_number + 1
    unpaid = merchant.add_invoice(token=token, receiver=Account.create().address, amount="1000")
    transfer(w3, token, w3.eth.accounts[1], Account.create().address, 5)  # a block to fabricate into
    with ChaosServer(anvil.url) as liar:
        liar.set_fault("fabricate", at_block=w3.eth.block_number, methods=["eth_getLogs"])
        assert poller(liar.url, token, merchant, start).poll_once() == 1
        assert poller(liar.url, token, merchant, start).poll_once() == 1  # the same fake again
    (first, again) = merchant.report()["unverified"]
    assert first["invoice_uuid"] == unpaid["uuid"] and first["tx_hash"] == again["tx_hash"]
    result = scored(w3, token, merchant, [unpaid], start)
    assert (result.invoices_paid, result.false_settlements, result.duplicate_new_ids) == (0, 1, 1)
