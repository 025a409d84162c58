"""Matching benchmark: the pure cores a period runs, at 10,000 open invoices against 10,000 logs.

Times, on one core, what every agent computes from agreed data in one period:
`agreement.agree` over four identical observations, `dedupe.derive_events`
(matching and the webhook bodies), the observation's JSON encoding (what goes
through consensus) and `outbox.enqueue`. Half the invoices share one receiver
and amount (a shop with a flat price), so matching meets its hardest case:
many candidates per log. A benchmark, not a test.

    .venv/bin/python benchmarks/matching.py --invoices 10000 --logs 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from packages.settleproof.skills.settlement_abci.agreement import Observation, Payment, agree  # noqa: E402
from packages.settleproof.skills.settlement_abci.dedupe import derive_events  # noqa: E402
from packages.settleproof.skills.settlement_abci.invoices import Invoice  # noqa: E402
from packages.settleproof.skills.settlement_abci.outbox import enqueue  # noqa: E402
from packages.settleproof.skills.settlement_abci.transfers import Transfer  # noqa: E402

TOKEN = "0x" + "a1" * 20
FLAT_SHOP = "0x" + "b2" * 20


def address(n: int) -> str:
    """A distinct lower-case address."""
    return "0x" + f"{n:040x}"


def workload(invoices: int, logs: int) -> Tuple[Tuple[Invoice, ...], Tuple[Payment, ...]]:
    """Half the invoices to one flat-price shop, half to shops of their own; one log per invoice (and
    the surplus logs to nobody), 100 logs per block."""
    open_invoices = tuple(
        Invoice(f"{n:08d}-0000-4000-8000-000000000000", TOKEN, FLAT_SHOP if n % 2 else address(10**6 + n), 10**18)
        for n in range(invoices)
    )
    payments = tuple(
        Payment(
            Transfer(1000 + n // 100, n % 100, "0x" + f"{n:064x}", "0x" + f"{10**9 + 1000 + n // 100:064x}",
                     TOKEN, address(2 * 10**6 + n), open_invoices[n % invoices].receiver if n < invoices
                     else address(3 * 10**6 + n), 10**18),
            1_700_000_000 + n // 100,
        )
        for n in range(logs)
    )
    return open_invoices, payments


def timed(run: Callable[[], Any]) -> Tuple[float, Any]:
    """Seconds one call takes, and its result."""
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    """Run each step once, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--logs", type=int, default=10_000)
    args = parser.parse_args()
    invoices, payments = workload(args.invoices, args.logs)
    last_block = max(p.transfer.block_number for p in payments)
    observation = Observation(1000, last_block, payments, invoices)
    seconds: Dict[str, float] = {}
    seconds["observation_to_json"], text = timed(observation.to_json)
    seconds["observation_from_json"], _ = timed(lambda: Observation.from_json(text))
    seconds["agree_4_agents"], agreement = timed(lambda: agree([observation] * 4, 1000, 3, 4))
    seconds["derive_events"], derived = timed(lambda: derive_events(agreement, {}, 12))
    seconds["enqueue"], _ = timed(lambda: enqueue([], {}, derived.events, 1_700_000_000))
    print(json.dumps({
        "invoices": args.invoices, "logs": args.logs, "settlements": len(derived.events),
        "observation_bytes": len(text), "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
