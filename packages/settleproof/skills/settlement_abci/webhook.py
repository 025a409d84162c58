"""The `invoice.paid` webhook: a body fixed once from agreed data, signed per Standard Webhooks.

The body and id are computed when the payment is agreed and stored in the
outbox, so every keeper, retry and restart sends the same bytes; only the
timestamp and signature change per attempt.
"""

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Dict, Sequence

from packages.settleproof.skills.settlement_abci.config import parse_webhook_secret
from packages.settleproof.skills.settlement_abci.matching import Settlement


EVENT_TYPE = "invoice.paid"


@dataclass(frozen=True)
class WebhookEvent:
    """An event ready to send: its id and the exact body bytes (as text), and the payment's block
    (kept with the processed key, so old keys can be let go; never sent separately)."""

    id: str
    body: str
    block_number: int = 0


def iso_utc(unix_seconds: int) -> str:
    """ISO 8601 UTC with a `Z`, second precision (`unix_seconds` <= `transfers.MAX_TIMESTAMP`)."""
    moment = datetime.fromtimestamp(unix_seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_event(settlement: Settlement, block_timestamp: int, confirmations: int) -> WebhookEvent:
    """The webhook for one settlement, in the format of the README."""
    transfer = settlement.transfer
    body = {
        "type": EVENT_TYPE,
        "id": settlement.key,
        "timestamp": iso_utc(block_timestamp),
        "data": {
            "invoice_uuid": settlement.invoice.uuid,
            "tx_hash": transfer.tx_hash,
            "log_index": transfer.log_index,
            "block_number": transfer.block_number,
            "block_hash": transfer.block_hash,
            "token": transfer.token,
            "from": transfer.sender,
            "to": transfer.receiver,
            "amount": str(transfer.value),
            "confirmations": confirmations,
        },
    }
    return WebhookEvent(settlement.key, json.dumps(body, separators=(",", ":")), transfer.block_number)


def signature(secret: str, event_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with a `whsec_` secret."""
    key = parse_webhook_secret("webhook secret", secret)
    signed = f"{event_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    event: WebhookEvent, secrets: Sequence[str], timestamp: int
) -> Dict[str, str]:
    """Headers of one delivery attempt; one signature per secret, space-separated."""
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": event.id,
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, event.id, timestamp, event.body) for secret in secrets
        ),
    }
