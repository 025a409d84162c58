"""SettleProof: off-chain helpers, dev tooling and the `settleproof` CLI around our Open Autonomy service."""

__version__ = "0.1.0"
