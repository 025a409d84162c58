"""The agent's skill: registration, then settlement periods separated by reset-and-pause."""

from aea.configurations.base import PublicId


PUBLIC_ID = PublicId.from_str("settleproof/settleproof_chained_abci:0.1.0")
