"""Consensus-state benchmark: the committed state (what a recovery sends through consensus) after a
long merchant outage, in the bounded design and as it would be if the outbox and the dead letters
lived in synchronized state unbounded.

Two histories, driven through the rounds' own pure cores:

* 100,000 dead letters: events given up on in batches of 100 (one batch per commit), the summary
  chained as the Checkpoint round does it;
* 10,000 pending events: 10,000 open invoices each paid in one scan while the merchant is down; the
  Dedupe round's `within_capacity` decides what enters the outbox.

Reported: the committed state's JSON bytes and its hex-encoded consensus transaction, for the
bounded state and for the unbounded one. A benchmark, not a test.

    .venv/bin/python benchmarks/state.py --dead-letters 100000 --pending 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from packages.settleproof.skills.settlement_abci.agreement import Agreement, Payment  # noqa: E402
from packages.settleproof.skills.settlement_abci.dedupe import (  # noqa: E402
    MAX_OUTBOX_ENTRIES,
    derive_events,
    within_capacity,
)
from packages.settleproof.skills.settlement_abci.invoices import Invoice  # noqa: E402
from packages.settleproof.skills.settlement_abci.outbox import (  # noqa: E402
    EMPTY_DEAD_SUMMARY,
    OutboxEntry,
    dumps,
    dumps_processed,
    enqueue,
    summarize_dead,
)
from packages.settleproof.skills.settlement_abci.recovery import CommittedState  # noqa: E402
from packages.settleproof.skills.settlement_abci.transfers import Transfer  # noqa: E402

TOKEN = "0x" + "a1" * 20
NOW = 1_700_000_000


def address(n: int) -> str:
    """A distinct lower-case address."""
    return "0x" + f"{n:040x}"


def tx(n: int) -> str:
    """A distinct 32-byte hash."""
    return "0x" + f"{n:064x}"


def paid_scan(count: int, first_block: int = 1000) -> Agreement:
    """`count` open invoices, each paid by its own transfer, 100 transfers a block."""
    invoices = tuple(
        Invoice(f"{n:08d}-1111-4222-8333-444455556666", TOKEN, address(0x10000 + n), 10**18) for n in range(count)
    )
    payments = tuple(
        Payment(Transfer(first_block + n // 100, n % 100, tx(n), tx(10**9 + first_block + n // 100), TOKEN,
                         address(0xC1), address(0x10000 + n), 10**18), NOW)
        for n in range(count)
    )
    return Agreement(first_block, first_block + count // 100 + 1, payments, invoices)


def state_bytes(outbox: List[OutboxEntry], dead: List[OutboxEntry], summary: str, processed: Dict[str, int]) -> int:
    """The committed state's JSON size."""
    values = {"outbox": dumps(outbox), "dead_letters": dumps(dead), "dead_letter_summary": summary,
              "processed_keys": dumps_processed(processed)}
    return len(CommittedState(1, 1000, tx(1), values).to_json())


def dead_letters(total: int) -> Dict[str, Any]:
    """The state after `total` events were given up on, 100 per commit."""
    started = time.perf_counter()
    summary, batch = EMPTY_DEAD_SUMMARY, []
    template = derive_events(paid_scan(MAX_OUTBOX_ENTRIES), {}, 12).events
    for start in range(0, total, MAX_OUTBOX_ENTRIES):
        batch = [
            OutboxEntry(f"{start + k}:{tx(start + k)}", event.body, 10, 503, "", NOW, NOW, NOW, "max_attempts")
            for k, event in enumerate(template[: min(MAX_OUTBOX_ENTRIES, total - start)])
        ]
        summary = summarize_dead(summary, batch)
    bounded = state_bytes([], batch, summary, {})
    per_entry = len(dumps(batch)) / max(1, len(batch))
    return {
        "dead_letters": total,
        "bounded_state_bytes": bounded,
        "unbounded_state_bytes": int(bounded + per_entry * (total - len(batch))),
        "seconds": round(time.perf_counter() - started, 2),
    }


def pending(total: int) -> Dict[str, Any]:
    """The state once the first scan of `total` paid invoices met a merchant that is down."""
    scan = paid_scan(total)
    started = time.perf_counter()
    _, kept_events = within_capacity(scan, {}, 12, 0)
    seconds = time.perf_counter() - started
    kept = kept_events.events
    outbox, processed = enqueue([], {}, kept, NOW)
    everything, all_processed = enqueue([], {}, derive_events(scan, {}, 12).events, NOW)
    outbox = [replace(e, attempts=1, last_status=503, next_attempt_at=NOW + 30) for e in outbox]
    return {
        "pending_events": total,
        "in_outbox": len(outbox),
        "left_in_the_chain": total - len(outbox),
        "bounded_state_bytes": state_bytes(outbox, [], EMPTY_DEAD_SUMMARY, processed),
        "unbounded_state_bytes": state_bytes(everything, [], EMPTY_DEAD_SUMMARY, all_processed),
        "within_capacity_seconds": round(seconds, 3),
    }


def main() -> None:
    """Run both histories and print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead-letters", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=10_000)
    args = parser.parse_args()
    result = {"dead_letters": dead_letters(args.dead_letters), "pending": pending(args.pending)}
    for part in result.values():
        for key in [k for k in part if k.endswith("_state_bytes")]:
            part[key.replace("_bytes", "_tx_hex_bytes")] = 2 * part[key]  # the framework hex-encodes it
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
