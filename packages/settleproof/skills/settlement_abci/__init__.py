"""The settlement skill: detects ERC-20 payments of merchant invoices and notifies the merchant."""

from aea.configurations.base import PublicId


PUBLIC_ID = PublicId.from_str("settleproof/settlement_abci:0.1.0")
