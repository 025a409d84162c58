"""Tests of the settleproof_chained_abci skill."""
