"""The merchant simulator verifies, dedupes and records deliveries as the README promises merchants can."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
import requests
from standardwebhooks import Webhook

from settleproof.merchant import INVOICE_FIELDS, Merchant, MerchantServer, MerchantTimeout, new_secret

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
RECEIVER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PAYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
TX = "0x" + "ab" * 32


def paid_event(invoice_uuid: str, tx_hash: str = TX) -> Dict[str, Any]:
    """An ``invoice.paid`` body in the README's format."""
    return {
        "type": "invoice.paid",
        "id": f"{invoice_uuid}:{tx_hash}",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "invoice_uuid": invoice_uuid, "tx_hash": tx_hash, "log_index": 0, "block_number": 7,
            "block_hash": "0x" + "cd" * 32, "token": TOKEN, "from": PAYER, "to": RECEIVER,
            "amount": "1000", "confirmations": 12,
        },
    }  # fmt: skip


def signed(secret: str, event: Dict[str, Any], msg_id: Optional[str] = None) -> Tuple[bytes, Dict[str, str]]:
    """Body and headers as the service sends them, signed with the real library."""
    body = json.dumps(event, separators=(",", ":"), sort_keys=True)
    msg_id = msg_id or event["id"]
    now = datetime.now(timezone.utc)
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": msg_id,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }
    return body.encode(), headers


def post(server: MerchantServer, body: bytes, headers: Dict[str, str], timeout: float = 10) -> requests.Response:
    return requests.post(server.webhook_url, data=body, headers=headers, timeout=timeout)


def new_invoice(server: MerchantServer, **extra: Any) -> Dict[str, Any]:
    response = requests.post(
        server.url + "/invoices",
        json={"token": TOKEN, "receiver": RECEIVER, "amount": "1000", **extra},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


# ---------------------------------------------------------------------- verification
def test_signed_delivery_accepted_and_marks_invoice_paid(merchant: MerchantServer, webhook_secret: str) -> None:
    invoice = new_invoice(merchant)
    body, headers = signed(webhook_secret, paid_event(invoice["uuid"]))

    response = post(merchant, body, headers)

    assert response.status_code == 204
    [event] = merchant.events()
    assert event["id"] == f"{invoice['uuid']}:{TX}"
    assert (event["invoice_uuid"], event["tx_hash"], event["known_invoice"]) == (invoice["uuid"], TX, True)
    assert event["headers"]["idempotency-key"] == event["id"]
    assert event["raw_body"].encode() == body
    paid = merchant.invoice(invoice["uuid"])
    assert (paid["status"], paid["tx_hash"]) == ("paid", TX)
    assert merchant.open_invoices() == []


def test_tampered_body_rejected_with_401(merchant: MerchantServer, webhook_secret: str) -> None:
    invoice = new_invoice(merchant)
    body, headers = signed(webhook_secret, paid_event(invoice["uuid"]))
    tampered = body.replace(b'"amount":"1000"', b'"amount":"9999"')
    assert tampered != body

    assert post(merchant, tampered, headers).status_code == 401

    report = requests.get(merchant.url + "/events", timeout=10).json()
    assert report["rejected"] == 1 and report["events"] == []
    assert merchant.invoice(invoice["uuid"])["status"] == "open"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda h: h.pop("webhook-signature"), id="missing-signature"),
        pytest.param(lambda h: h.update({"webhook-signature": "garbage"}), id="garbled-signature"),
        pytest.param(lambda h: h.update({"webhook-timestamp": str(int(time.time()) - 3600)}), id="stale-timestamp"),
        pytest.param(lambda h: h.update({"webhook-id": "other-id"}), id="id-not-signed"),
    ],
)
def test_bad_signature_headers_rejected_with_401(merchant: MerchantServer, webhook_secret: str, mangle) -> None:
    body, headers = signed(webhook_secret, paid_event("inv-1"))
    mangle(headers)
    assert post(merchant, body, headers).status_code == 401
    assert len(merchant.rejections) == 1 and merchant.events() == []


def test_wrong_secret_rejected(merchant: MerchantServer) -> None:
    body, headers = signed(new_secret(), paid_event("inv-1"))
    assert post(merchant, body, headers).status_code == 401
    assert len(merchant.rejections) == 1


def test_rotation_both_signatures_accepted_by_either_secret(merchant: MerchantServer, webhook_secret: str) -> None:
    next_secret = new_secret()
    body, headers = signed(webhook_secret, paid_event("inv-1"))
    _, next_headers = signed(next_secret, paid_event("inv-1"))
    headers["webhook-signature"] += " " + next_headers["webhook-signature"]
    assert post(merchant, body, headers).status_code == 204
    merchant.set_secret(next_secret)
    event2 = paid_event("inv-2")
    body2, headers2 = signed(next_secret, event2)
    assert post(merchant, body2, headers2).status_code == 204
    assert [e["invoice_uuid"] for e in merchant.events()] == ["inv-1", "inv-2"]


def test_same_id_twice_counted_as_duplicate(merchant: MerchantServer, webhook_secret: str) -> None:
    invoice = new_invoice(merchant)
    body, headers = signed(webhook_secret, paid_event(invoice["uuid"]))

    assert post(merchant, body, headers).status_code == 204
    second = post(merchant, body, headers)

    assert second.status_code == 200 and second.json() == {"duplicate": True}
    assert len(merchant.events()) == 1
    assert merchant.duplicates == {f"{invoice['uuid']}:{TX}": 1}


def test_second_payment_for_paid_invoice_is_flagged(merchant: MerchantServer, webhook_secret: str) -> None:
    invoice = new_invoice(merchant)
    for tx in (TX, "0x" + "ef" * 32):
        assert post(merchant, *signed(webhook_secret, paid_event(invoice["uuid"], tx))).status_code == 204
    assert [c["tx_hash"] for c in merchant.conflicts] == ["0x" + "ef" * 32]
    assert merchant.invoice(invoice["uuid"])["tx_hash"] == TX


# ---------------------------------------------------------------------- invoices
def test_invoice_lists_match_contract_format(merchant: MerchantServer, webhook_secret: str) -> None:
    first = new_invoice(merchant, payer=PAYER, created_block=5)
    new_invoice(merchant, uuid="fixed-uuid", amount=42)

    open_list = requests.get(merchant.invoices_url, timeout=10).json()
    assert open_list == [
        {"uuid": first["uuid"], "token": TOKEN, "receiver": RECEIVER, "amount": "1000", "payer": PAYER, "created_block": 5},
        {"uuid": "fixed-uuid", "token": TOKEN, "receiver": RECEIVER, "amount": "42", "payer": None, "created_block": None},
    ]
    assert all(tuple(row) == INVOICE_FIELDS for row in open_list)

    post(merchant, *signed(webhook_secret, paid_event("fixed-uuid")))
    assert [row["uuid"] for row in requests.get(merchant.invoices_url, timeout=10).json()] == [first["uuid"]]
    everything = requests.get(merchant.url + "/invoices", timeout=10).json()
    assert [(row["uuid"], row["status"], row["tx_hash"]) for row in everything] == [
        (first["uuid"], "open", None),
        ("fixed-uuid", "paid", TX),
    ]


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"token": "0x12", "receiver": RECEIVER, "amount": "1"}, 400, "token"),
        ({"token": TOKEN, "receiver": RECEIVER, "amount": "1.5"}, 400, "amount"),
        ({"token": TOKEN, "receiver": RECEIVER, "amount": "1", "created_block": "7"}, 400, "created_block"),
        ({"token": TOKEN, "receiver": RECEIVER, "amount": "1", "uuid": "dup"}, 409, "uuid"),
    ],
)
def test_bad_invoices_refused(merchant: MerchantServer, body: dict, status: int, field: str) -> None:
    merchant.add_invoice(TOKEN, RECEIVER, "1", uuid="dup")
    response = requests.post(merchant.url + "/invoices", json=body, timeout=10)
    assert response.status_code == status and field in response.json()["error"]


def test_raw_entries_and_slow_list_update(merchant: MerchantServer, webhook_secret: str) -> None:
    merchant.add_invoice(TOKEN, RECEIVER, "1", uuid="a")
    merchant.add_raw_invoice({"uuid": "broken", "amount": 5})
    merchant.list_paid_as_open = True
    post(merchant, *signed(webhook_secret, paid_event("a")))
    listed = requests.get(merchant.invoices_url, timeout=10).json()
    assert [row["uuid"] for row in listed] == ["a", "broken"]
    assert listed[1] == {"uuid": "broken", "amount": 5}


# ---------------------------------------------------------------------- fault knobs
def test_fail_for_n_requests_with_retry_after(merchant: MerchantServer, webhook_secret: str) -> None:
    merchant.fail(503, count=2, retry_after=3)
    body, headers = signed(webhook_secret, paid_event("inv-1"))

    answers = [post(merchant, body, headers) for _ in range(3)]

    assert [r.status_code for r in answers] == [503, 503, 204]
    assert [r.headers.get("Retry-After") for r in answers[:2]] == ["3", "3"]
    assert [a["status"] for a in merchant.attempts] == [503, 503, 204]
    assert len(merchant.events()) == 1


def test_a_sticky_fault_keeps_answering_the_ids_it_answered(merchant: MerchantServer, webhook_secret: str) -> None:
    """fail(410, count=1, sticky=True): the first event gets 410 every time, the next one gets through."""
    merchant.fail(410, count=1, sticky=True)
    first, first_headers = signed(webhook_secret, paid_event("inv-1"))
    second, second_headers = signed(webhook_secret, paid_event("inv-2"))
    assert [post(merchant, first, first_headers).status_code for _ in range(2)] == [410, 410]
    assert post(merchant, second, second_headers).status_code == 204
    assert post(merchant, first, first_headers).status_code == 410
    merchant.clear_faults()
    assert post(merchant, first, first_headers).status_code == 204


def test_fail_until_cleared_over_http_control(merchant: MerchantServer, webhook_secret: str) -> None:
    control = requests.post(merchant.url + "/_control", json={"action": "fail", "status": 410}, timeout=10)
    assert control.status_code == 200
    body, headers = signed(webhook_secret, paid_event("inv-1"))
    assert [post(merchant, body, headers).status_code for _ in range(3)] == [410, 410, 410]
    assert merchant.events() == []
    requests.post(merchant.url + "/_control", json={"action": "clear"}, timeout=10)
    assert post(merchant, body, headers).status_code == 204
    bad = requests.post(merchant.url + "/_control", json={"action": "explode"}, timeout=10)
    assert bad.status_code == 400


def test_fault_on_invoice_list_leaves_webhook_alone(merchant: MerchantServer, webhook_secret: str) -> None:
    merchant.fail(400, count=1, path="/invoices")
    assert requests.get(merchant.invoices_url, timeout=10).status_code == 400
    assert post(merchant, *signed(webhook_secret, paid_event("inv-1"))).status_code == 204
    assert requests.get(merchant.invoices_url, timeout=10).status_code == 200


def test_delay_holds_response_then_processes(merchant: MerchantServer, webhook_secret: str) -> None:
    merchant.delay(1.0, count=1)
    body, headers = signed(webhook_secret, paid_event("inv-1"))

    with pytest.raises(requests.exceptions.ReadTimeout):
        post(merchant, body, headers, timeout=0.2)  # the sender gives up...
    [event] = merchant.wait_for_events(1, timeout=10)  # ...but the merchant still handled it
    assert event["invoice_uuid"] == "inv-1"
    started = time.monotonic()
    assert post(merchant, body, headers).status_code == 200  # the retry is a duplicate, no delay left
    assert time.monotonic() - started < 1.0
    assert merchant.duplicates == {event["id"]: 1}


# ---------------------------------------------------------------------- waiting
def test_wait_for_events_returns_upon_arrival(merchant: MerchantServer, webhook_secret: str) -> None:
    got: Dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: got.update(events=merchant.wait_for_events(2, timeout=60)), daemon=True)
    waiter.start()
    post(merchant, *signed(webhook_secret, paid_event("inv-1")))
    assert waiter.is_alive()  # one event is not enough
    post(merchant, *signed(webhook_secret, paid_event("inv-2")))
    waiter.join(timeout=5)  # far below the waiter's own 60 s: it must have woken on arrival
    assert not waiter.is_alive()
    assert [e["invoice_uuid"] for e in got["events"]] == ["inv-1", "inv-2"]


def test_wait_for_events_timeout_says_what_arrived(merchant: MerchantServer, webhook_secret: str) -> None:
    post(merchant, *signed(webhook_secret, paid_event("inv-1")))
    post(merchant, b"{}", {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"})
    with pytest.raises(MerchantTimeout, match=r"got 1 events .*inv-1.*1 rejected"):
        merchant.wait_for_events(2, timeout=0.2)


def test_async_wait_from_another_loop(merchant: MerchantServer, webhook_secret: str) -> None:
    async def scenario() -> list:
        waiting = asyncio.ensure_future(merchant.wait_for_events_async(1, timeout=60))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: post(merchant, *signed(webhook_secret, paid_event("inv-9"))))
        return await asyncio.wait_for(waiting, timeout=5)

    events = asyncio.run(scenario())
    assert [e["invoice_uuid"] for e in events] == ["inv-9"]


def test_in_process_merchant_without_http() -> None:
    secret = new_secret()
    merchant = Merchant(secret)
    body, headers = signed(secret, paid_event("inv-1"))
    assert merchant.handle_webhook(body, headers) == (204, None)
    assert merchant.handle_webhook(body, headers) == (200, {"duplicate": True})
    with pytest.raises(MerchantTimeout):
        merchant.wait_for_events(2, timeout=0.05)


# ---------------------------------------------------------------------- standalone
@pytest.mark.e2e
def test_standalone_process(webhook_secret: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "settleproof.merchant", "--port", "0", "--secret", webhook_secret],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # blocks until the server printed its URL (or died)
        assert "merchant listening on http://127.0.0.1:" in line, line
        url = line.split()[3]
        assert requests.get(url + "/invoices?status=open", timeout=10).json() == []
        event = paid_event("inv-1")
        body, headers = signed(webhook_secret, event)
        assert requests.post(url + "/webhook", data=body, headers=headers, timeout=10).status_code == 204
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0  # SIGTERM handled: clean shutdown
