"""The `SETTLEPROOF_*` settings of a local service: one place for the demo and the tests."""

from typing import Dict, Sequence

from settleproof.merchant import MerchantServer


def settleproof_env(  # pylint: disable=too-many-arguments
    providers: Sequence[str],
    token: str,
    merchant: MerchantServer,
    secret: str,
    confirmations: int,
    start_block: int,
) -> Dict[str, str]:
    """Every agent's settings for these providers, token and merchant (the README's names)."""
    return {
        "SETTLEPROOF_RPC_ENDPOINTS": ",".join(providers),
        "SETTLEPROOF_TOKEN_ADDRESS": token,
        "SETTLEPROOF_INVOICES_URL": merchant.invoices_url,
        "SETTLEPROOF_WEBHOOK_URL": merchant.webhook_url,
        "SETTLEPROOF_WEBHOOK_SECRET": secret,
        "SETTLEPROOF_CONFIRMATIONS": str(confirmations),
        "SETTLEPROOF_START_BLOCK": str(start_block),
    }
