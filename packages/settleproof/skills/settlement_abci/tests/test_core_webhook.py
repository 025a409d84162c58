"""The `invoice.paid` webhook: the README body, fixed bytes, Standard Webhooks signatures."""

import base64
import json
import re
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from packages.settleproof.skills.settlement_abci.matching import Settlement
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    SECRET,
    SECRET_NEXT,
    examples,
    invoices,
    make_invoice,
    make_transfer,
    transfers,
    uint256,
)
from packages.settleproof.skills.settlement_abci.webhook import (
    WebhookEvent,
    build_event,
    iso_utc,
    signature,
    signed_headers,
)


HEX_HASH = re.compile(r"0x[0-9a-f]{64}")
HEX_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
DATA_KEYS = {
    "invoice_uuid", "tx_hash", "log_index", "block_number", "block_hash",
    "token", "from", "to", "amount", "confirmations",
}


def whsec(key: bytes, padded: bool) -> str:
    """A Standard Webhooks secret; standardwebhooks also accepts unpadded base64."""
    encoded = base64.b64encode(key).decode()
    return "whsec_" + (encoded if padded else encoded.rstrip("="))


secrets = st.builds(whsec, st.binary(min_size=16, max_size=48), st.booleans())
uuids = st.text(min_size=1, max_size=40).filter(lambda u: u.strip())
timestamps = st.integers(min_value=0, max_value=4_102_444_800)  # up to 2100
settlements = st.builds(
    Settlement,
    st.builds(replace, invoices(), uuid=uuids),  # any merchant uuid, non-ASCII included
    transfers(values=uint256, min_block=0, max_block=2**40),
)


def now() -> int:
    """Unix seconds now: standardwebhooks refuses timestamps more than 5 minutes away."""
    return int(time.time())


@examples(50)
@given(settlements, timestamps, st.integers(min_value=0, max_value=1000))
def test_body_has_the_contract_shape(settlement, block_timestamp, confirmations):
    """Exactly the documented keys and types; amount a decimal string; block time in UTC."""
    event = build_event(settlement, block_timestamp, confirmations)
    body = json.loads(event.body)
    transfer = settlement.transfer
    assert set(body) == {"type", "id", "timestamp", "data"}
    assert body["type"] == "invoice.paid"
    assert body["id"] == event.id == f"{settlement.invoice.uuid}:{transfer.tx_hash}"
    assert ISO_UTC.fullmatch(body["timestamp"])
    parsed = datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert parsed.timestamp() == block_timestamp
    data = body["data"]
    assert set(data) == DATA_KEYS
    assert data["invoice_uuid"] == settlement.invoice.uuid
    assert HEX_HASH.fullmatch(data["tx_hash"]) and data["tx_hash"] == transfer.tx_hash
    assert HEX_HASH.fullmatch(data["block_hash"]) and data["block_hash"] == transfer.block_hash
    for key, value in (("token", transfer.token), ("from", transfer.sender), ("to", transfer.receiver)):
        assert HEX_ADDRESS.fullmatch(data[key]) and data[key] == value
    for key, value in (("log_index", transfer.log_index), ("block_number", transfer.block_number),
                       ("confirmations", confirmations)):
        assert type(data[key]) is int and data[key] == value
    assert isinstance(data["amount"], str) and re.fullmatch(r"[0-9]+", data["amount"])
    assert int(data["amount"]) == transfer.value


def test_body_example():
    """The exact bytes for one payment (what the merchant's test suite can pin)."""
    transfer = make_transfer(block_number=436, log_index=2, value=10**24)
    event = build_event(Settlement(make_invoice(uuid="inv-42"), transfer), 1_700_000_000, 12)
    assert event.body == (
        '{"type":"invoice.paid","id":"inv-42:' + transfer.tx_hash + '",'
        '"timestamp":"2023-11-14T22:13:20Z","data":{"invoice_uuid":"inv-42",'
        '"tx_hash":"' + transfer.tx_hash + '","log_index":2,"block_number":436,'
        '"block_hash":"' + transfer.block_hash + '","token":"' + transfer.token + '",'
        '"from":"' + transfer.sender + '","to":"' + transfer.receiver + '",'
        '"amount":"1000000000000000000000000","confirmations":12}}'
    )
    assert iso_utc(0) == "1970-01-01T00:00:00Z"


@examples(50)
@given(settlements, timestamps, secrets, st.lists(st.integers(0, 290), min_size=2, max_size=4))
def test_every_attempt_verifies_with_standardwebhooks_and_sends_the_same_body(
    settlement, block_timestamp, secret, ages
):
    """Retries at different timestamps: same id and body, fresh valid signature each time."""
    event = build_event(settlement, block_timestamp, 12)
    assert build_event(settlement, block_timestamp, 12) == event
    verifier = Webhook(secret)
    for age in ages:
        attempt = now() - age
        headers = signed_headers(event, [secret], attempt)
        assert headers["webhook-id"] == headers["Idempotency-Key"] == event.id
        assert headers["webhook-timestamp"] == str(attempt)
        assert headers["Content-Type"] == "application/json"
        assert verifier.verify(event.body.encode(), headers) == json.loads(event.body)


@examples(30)
@given(settlements, secrets, secrets)
def test_rotation_signs_with_both_secrets(settlement, current, following):
    """During rotation either secret verifies; an unrelated secret does not."""
    event = build_event(settlement, 1_700_000_000, 12)
    headers = signed_headers(event, [current, following], now())
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(current).verify(event.body, headers)
    Webhook(following).verify(event.body, headers)
    if SECRET not in (current, following):
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(event.body, headers)


def test_tampering_is_detected():
    """Another body, id or timestamp than the signed ones fails verification."""
    event = build_event(Settlement(make_invoice(uuid="inv-1"), make_transfer()), 1_700_000_000, 12)
    stamp = now()
    headers = signed_headers(event, [SECRET], stamp)
    verifier = Webhook(SECRET)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(event.body.replace('"confirmations":12', '"confirmations":13'), headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(event.body, {**headers, "webhook-id": "inv-2:" + make_transfer().tx_hash})
    with pytest.raises(WebhookVerificationError):
        verifier.verify(event.body, {**headers, "webhook-timestamp": str(stamp - 1)})
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_NEXT).verify(event.body, headers)


def test_signature_format():
    """`v1,<base64 of HMAC-SHA256("id.timestamp.body")>`, as the merchant recomputes it."""
    event = WebhookEvent("inv-1:0xab", '{"a":1}')
    value = signature(SECRET, event.id, 1_700_000_000, event.body)
    version, digest = value.split(",")
    assert version == "v1" and len(base64.b64decode(digest)) == 32
    expected = Webhook(SECRET).sign(
        event.id, datetime.fromtimestamp(1_700_000_000, tz=timezone.utc), event.body
    )
    assert value == expected
