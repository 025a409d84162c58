"""The webhook client connection: merchant POSTs without following redirects."""

from aea.configurations.base import PublicId


PUBLIC_ID = PublicId.from_str("settleproof/webhook_client:0.1.0")
