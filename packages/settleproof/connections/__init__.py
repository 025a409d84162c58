"""SettleProof's connections."""
