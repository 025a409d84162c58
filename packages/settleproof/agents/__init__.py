"""SettleProof's Open Autonomy packages."""
