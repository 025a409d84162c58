"""How one agent observes a period: invoices from the merchant, payments from a quorum of providers.

The shell only does I/O: it drives the sans-I/O `QuorumReader` with the
behaviour's parallel HTTP and the framework's `sleep`. Every decision is made
by the pure modules (`invoices`, `rpc_reader`, `quorum`, `chunking`, ...).
Failures never raise: they shrink the observation, so the agreement simply
covers less, and the checkpoint stays where it was. What the merchant and the
chain can put in an observation is bounded (`bounds`): dust that pays no open
invoice is left out before any block is read, and lists over a bound are cut in
an order every agent shares, each cut logged and counted in `inputs_truncated_total`.
"""

import json
import time
from abc import ABC
from dataclasses import replace
from typing import Generator, List, Optional, Tuple, TypeVar, cast

from packages.settleproof.skills.settlement_abci.agreement import Observation
from packages.settleproof.skills.settlement_abci.behaviour_base import (
    HttpRequest,
    SettlementBaseBehaviour,
)
from packages.settleproof.skills.settlement_abci.bounds import (
    MAX_OBSERVATION_BYTES,
    MAX_OPEN_INVOICES,
    MAX_PAYMENTS_PER_OBSERVATION,
    Payable,
    first_invoices,
    first_transfers,
    fit_observation,
)
from packages.settleproof.skills.settlement_abci.invoices import (
    MAX_REPORTED_ERRORS,
    Invoice,
    InvalidInvoice,
    parse_invoices,
)
from packages.settleproof.skills.settlement_abci.metrics import InputMetrics
from packages.settleproof.skills.settlement_abci.models import RpcHealth
from packages.settleproof.skills.settlement_abci.rpc_exchange import (
    ExchangeConfig,
    RpcReply,
    Steps,
    providers_of,
)
from packages.settleproof.skills.settlement_abci.rpc_reader import Narrow, QuorumReader
from packages.settleproof.skills.settlement_abci.transfers import Transfer


JSON_HEADERS = {"Content-Type": "application/json"}
NO_STATE = -1
# Share of the round timeout the RPC reads may use; the rest is for consensus.
READ_SHARE = 0.6
T = TypeVar("T")


class ObserverMixin(SettlementBaseBehaviour, ABC):
    """Builds this agent's `Observation` of the current period."""

    def observe(
        self, from_block: Optional[int], anchor: Optional[int] = None
    ) -> Generator[None, None, Observation]:
        """Observe `[from_block, safe head]`; `from_block=None` only reports the safe head.
        With `anchor`, also report the hash a quorum of providers gives that block now."""
        observation = yield from self._observe_range(from_block)
        if anchor is not None and anchor >= 0:
            anchor_hash = yield from self.block_hash(anchor)
            observation = replace(observation, anchor_hash=anchor_hash)
        return self._within_size(observation)

    def block_hash(self, number: int) -> Generator[None, None, str]:
        """The block's hash per a quorum of providers, or "" when they do not agree on one."""
        reader = self.quorum_reader()
        blocks = yield from self.drive(reader.read_blocks([number]), {})
        block = blocks.get(number)
        return "" if block is None else block[0]

    def _observe_range(self, from_block: Optional[int]) -> Generator[None, None, Observation]:
        settings = self.params.settings
        invoices = yield from self.fetch_invoices()
        reader = self.quorum_reader()
        head = yield from self.drive(reader.read_head(), None)
        if head is None:
            start = NO_STATE if from_block is None else from_block
            return Observation(start, start - 1, (), invoices)
        safe_head = head - settings.confirmations
        if from_block is None:
            return Observation(NO_STATE, safe_head, (), invoices)
        to_block = min(safe_head, from_block + settings.max_blocks_per_period - 1)
        if to_block < from_block or invoices is None:
            return Observation(from_block, min(to_block, from_block - 1), (), invoices)
        receivers = sorted({i.receiver for i in invoices})
        if not receivers:
            return Observation(from_block, to_block, (), invoices)
        steps = reader.read_payments(
            from_block, to_block, settings.token_addresses, receivers, self._payable_within_bounds(invoices)
        )
        payments, to_block = yield from self.drive(steps, ([], from_block - 1))
        return Observation(from_block, to_block, tuple(payments), invoices)

    @property
    def _inputs(self) -> InputMetrics:
        return cast(InputMetrics, self.context.metrics.inputs)

    def _payable_within_bounds(self, invoices: Tuple[Invoice, ...]) -> Narrow:
        """What the reader keeps of the agreed logs: transfers that could pay an invoice, at most the bound."""
        payable = Payable(invoices)

        def narrow(transfers: List[Transfer], last: int) -> Tuple[List[Transfer], int]:
            wanted = [t for t in transfers if payable(t)]
            if len(wanted) < len(transfers):
                self._inputs.unpayable.inc(len(transfers) - len(wanted))
                self.log("info", "transfers left out: they pay no open invoice", count=len(transfers) - len(wanted))
            kept, last, left_out = first_transfers(wanted, last, MAX_PAYMENTS_PER_OBSERVATION)
            if left_out:
                self._inputs.truncated.labels("payments").inc(left_out)
                self.log(
                    "warning",
                    "payments truncated: more payable transfers than one observation carries; "
                    "the range ends before `block`, which is read again next period",
                    count=len(wanted),
                    bound=MAX_PAYMENTS_PER_OBSERVATION,
                    block=last + 1,
                )
            return kept, last

        return narrow

    def _within_size(self, observation: Observation) -> Observation:
        """The observation cut (payments by whole blocks from the end) to what one transaction carries."""
        fitted, left_out = fit_observation(observation, MAX_OBSERVATION_BYTES)
        if left_out:
            self._inputs.truncated.labels("payments").inc(left_out)
            self.log(
                "warning",
                "payments truncated: the observation would pass its size bound; "
                "the range ends before `block`, which is read again next period",
                count=len(observation.payments),
                bound=MAX_OBSERVATION_BYTES,
                block=fitted.to_block + 1,
            )
        return fitted

    def quorum_reader(self) -> QuorumReader:
        """A reader for this period, with the agent's breakers and metrics."""
        params = self.params
        health = cast(RpcHealth, self.context.rpc_health)
        breakers = health.breakers(params.rpc_breaker_failures, params.rpc_breaker_cooldown_seconds)
        return QuorumReader(
            ExchangeConfig(params.rpc_timeout_seconds, params.rpc_retry),
            providers_of(params.settings.rpc_endpoints),
            params.settings.rpc_quorum,
            (params.max_log_range, params.rpc_max_lag_blocks),
            (breakers, health.metrics),
            self.log,
            time.monotonic,
            time.monotonic() + params.round_timeout_seconds * READ_SHARE,
        )

    def drive(self, steps: Steps[T], fallback: T) -> Generator[None, None, T]:
        """Run a reader's batches through the framework's HTTP; `fallback` if the reader fails."""
        replies: Optional[List[RpcReply]] = None
        while True:
            try:
                batch = steps.send(replies)  # type: ignore[arg-type]
            except StopIteration as stop:
                return cast(T, stop.value)
            except Exception as error:  # pylint: disable=broad-except
                # A bug in a pure core must not take the round down: observe less instead.
                self.log("error", "rpc reader failed", error=repr(error)[:300])
                return fallback
            if batch.delay > 0:
                yield from self.sleep(batch.delay)
            requests = [HttpRequest("POST", c.url, c.body, JSON_HEADERS) for c in batch.calls]
            http = yield from self.http_parallel(requests, batch.timeout)
            replies = [RpcReply(r.status, r.body, r.error, r.elapsed_ms) for r in http]

    def fetch_invoices(self) -> Generator[None, None, Optional[Tuple[Invoice, ...]]]:
        """The merchant's open invoices for watched tokens, or None when they cannot be read."""
        settings = self.params.settings
        (reply,) = yield from self.http_parallel(
            [HttpRequest("GET", settings.invoices_url)], self.params.rpc_timeout_seconds
        )
        if not reply.ok:
            self.log("warning", "invoices unavailable", status=reply.status, error=reply.error)
            return None
        try:
            invoices, errors = parse_invoices(json.loads(reply.body))
        except (ValueError, InvalidInvoice) as error:
            self.log("warning", "invoices unreadable", error=str(error)[:200])
            return None
        for error in errors:
            self.log("warning", error)
        watched = [i for i in invoices if i.token in settings.token_addresses]
        skipped = [i for i in invoices if i.token not in settings.token_addresses]
        for invoice in skipped[:MAX_REPORTED_ERRORS]:
            self.log("info", "invoice skipped: token not watched", invoice_uuid=invoice.uuid, token=invoice.token)
        if len(skipped) > MAX_REPORTED_ERRORS:
            self.log("info", "invoices skipped: token not watched", count=len(skipped))
        kept, left_out = first_invoices(watched, MAX_OPEN_INVOICES)
        if left_out:
            self._inputs.truncated.labels("invoices").inc(left_out)
            self.log(
                "warning",
                "invoices truncated: the merchant lists more open invoices than one observation carries; "
                "only the first by uuid are watched",
                count=len(watched),
                bound=MAX_OPEN_INVOICES,
            )
        return kept
