"""The settings that shape the agents' votes, hashed so the agents can agree they run the same ones.

Why: confirmations, quorum, tokens, start block, scan width, give-up rules and
retention come from each operator's environment, and every agent derives its
votes from them. An agent with another value would not crash: it would vote
differently in every period and split off, or worse, keep a minority from
forming. So each agent reports a digest per class of settings after
registration, the agents agree on the one a threshold reports, and an agent
whose own differs stops with one line naming the classes.

Secrets and per-agent values (RPC endpoints, data directory) are not hashed:
operators choose their own providers and keep their own secrets.
"""

import hashlib
import json
from dataclasses import asdict
from typing import Any, Dict, List, Mapping

from packages.settleproof.skills.settlement_abci.config import Settings
from packages.settleproof.skills.settlement_abci.outbox import OutboxPolicy

#: The classes, in the order they are reported; each names what it holds.
CLASSES = ("chain", "merchant", "outbox")


def _digest(values: Mapping[str, Any]) -> str:
    """SHA-256 of canonical JSON."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def settings_digests(settings: Settings, policy: OutboxPolicy, retention_blocks: int) -> Dict[str, str]:
    """One digest per class of vote-shaping settings."""
    return {
        "chain": _digest({
            "confirmations": settings.confirmations, "rpc_quorum": settings.rpc_quorum,
            "tokens": sorted(t.lower() for t in settings.token_addresses), "start_block": settings.start_block,
            "max_blocks_per_period": settings.max_blocks_per_period,
        }),
        "merchant": _digest({"invoices_url": settings.invoices_url, "webhook_url": settings.webhook_url}),
        "outbox": _digest({**asdict(policy), "processed_retention_blocks": retention_blocks}),
    }


def dumps(digests: Mapping[str, str]) -> str:
    """Canonical JSON, as the RecoverState payload carries it."""
    return json.dumps({name: digests[name] for name in CLASSES}, separators=(",", ":"))


def differing_classes(own: Mapping[str, str], agreed: Mapping[str, str]) -> List[str]:
    """The classes whose digest differs from the agreed one, in `CLASSES` order."""
    return [name for name in CLASSES if own.get(name) != agreed.get(name)]


#: Which settings each class holds, for the line an agent that differs stops with.
CLASS_SETTINGS = {
    "chain": "SETTLEPROOF_CONFIRMATIONS, SETTLEPROOF_RPC_QUORUM, SETTLEPROOF_TOKEN_ADDRESS, "
             "SETTLEPROOF_START_BLOCK, SETTLEPROOF_MAX_BLOCKS_PER_PERIOD",
    "merchant": "SETTLEPROOF_INVOICES_URL, SETTLEPROOF_WEBHOOK_URL",
    "outbox": "SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS, webhook_client_error_attempts, webhook_max_age_seconds, "
              "processed_retention_blocks",
}
