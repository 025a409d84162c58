"""SettleProof skills."""
