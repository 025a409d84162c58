"""The RPC client connection: JSON-RPC and invoice-list reads, size-capped, redirects not followed."""

from aea.configurations.base import PublicId


PUBLIC_ID = PublicId.from_str("settleproof/rpc_client:0.1.0")
