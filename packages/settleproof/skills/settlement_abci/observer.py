"""How one agent observes a period: invoices from the merchant, payments from a quorum of providers.

The I/O goes through the behaviour's parallel HTTP; every decision is made by
the pure modules (`invoices`, `transfers`, `quorum`). Failures never raise:
they shrink the observation, so the agreement simply covers less.
"""

import json
from abc import ABC
from typing import Dict, Generator, List, Optional, Sequence, Tuple

from packages.settleproof.skills.settlement_abci.agreement import Observation, Payment
from packages.settleproof.skills.settlement_abci.behaviour_base import (
    HttpReply,
    HttpRequest,
    SettlementBaseBehaviour,
)
from packages.settleproof.skills.settlement_abci.invoices import (
    Invoice,
    InvalidInvoice,
    parse_invoices,
)
from packages.settleproof.skills.settlement_abci.quorum import (
    quorum_blocks,
    quorum_head,
    quorum_logs,
)
from packages.settleproof.skills.settlement_abci.transfers import (
    MalformedReply,
    Transfer,
    get_logs_request,
    parse_block,
    parse_block_number,
    parse_logs,
    rpc_request,
)


JSON_HEADERS = {"Content-Type": "application/json"}
NO_STATE = -1


class ObserverMixin(SettlementBaseBehaviour, ABC):
    """Builds this agent's `Observation` of the current period."""

    def observe(self, from_block: Optional[int]) -> Generator[None, None, Observation]:
        """Observe `[from_block, safe head]`; `from_block=None` only reports the safe head."""
        settings = self.params.settings
        invoices = yield from self.fetch_invoices()
        head = yield from self.fetch_quorum_head()
        if head is None:
            start = NO_STATE if from_block is None else from_block
            return Observation(start, start - 1, (), invoices)
        safe_head = head - settings.confirmations
        if from_block is None:
            return Observation(NO_STATE, safe_head, (), invoices)
        to_block = min(safe_head, from_block + settings.max_blocks_per_period - 1)
        if to_block < from_block or invoices is None:
            return Observation(from_block, min(to_block, from_block - 1), (), invoices)
        destinations = {i.receiver for i in invoices}
        if not destinations:
            return Observation(from_block, to_block, (), invoices)
        transfers, to_block = yield from self.fetch_quorum_transfers(
            from_block, to_block, sorted(destinations)
        )
        payments, to_block = yield from self.with_timestamps(transfers, to_block)
        return Observation(from_block, to_block, tuple(payments), invoices)

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
        watched = []
        for invoice in invoices:
            if invoice.token in settings.token_addresses:
                watched.append(invoice)
            else:
                self.log("info", "invoice skipped: token not watched", invoice_uuid=invoice.uuid, token=invoice.token)
        return tuple(watched)

    def rpc_all(self, bodies: Sequence[bytes]) -> Generator[None, None, Dict[str, List[HttpReply]]]:
        """Send the same JSON-RPC bodies to every provider in parallel."""
        endpoints = self.params.settings.rpc_endpoints
        requests = [
            HttpRequest("POST", url, body, JSON_HEADERS) for url in endpoints for body in bodies
        ]
        replies = yield from self.http_parallel(requests, self.params.rpc_timeout_seconds)
        per_provider: Dict[str, List[HttpReply]] = {}
        for position, url in enumerate(endpoints):
            per_provider[url] = replies[position * len(bodies) : (position + 1) * len(bodies)]
        return per_provider

    def _provider_failed(self, provider: str, reply: HttpReply, problem: str) -> None:
        self.log("warning", "provider failed", provider=provider, status=reply.status, problem=problem[:200])

    def fetch_quorum_head(self) -> Generator[None, None, Optional[int]]:
        """The head a quorum of providers has reached, or None without a quorum."""
        replies = yield from self.rpc_all([rpc_request(1, "eth_blockNumber", [])])
        heads: Dict[str, Optional[int]] = {}
        for provider, (reply,) in replies.items():
            heads[provider] = None
            try:
                heads[provider] = parse_block_number(self._body(reply))
            except MalformedReply as error:
                self._provider_failed(provider, reply, str(error))
        head = quorum_head(heads, self.params.settings.rpc_quorum)
        if head is None:
            self.log("warning", "no provider quorum on the head", heads=heads)
        return head

    def fetch_quorum_transfers(
        self, from_block: int, to_block: int, receivers: Sequence[str]
    ) -> Generator[None, None, Tuple[List[Transfer], int]]:
        """Logs accepted by a provider quorum, and how far the range is settled."""
        settings = self.params.settings
        body = get_logs_request(1, from_block, to_block, settings.token_addresses, receivers)
        replies = yield from self.rpc_all([body])
        answers: Dict[str, Optional[List[Transfer]]] = {}
        for provider, (reply,) in replies.items():
            answers[provider] = None
            try:
                answers[provider] = parse_logs(
                    self._body(reply), from_block, to_block, settings.token_addresses
                )
            except MalformedReply as error:
                self._provider_failed(provider, reply, str(error))
        result = quorum_logs(answers, settings.rpc_quorum)
        for provider in result.disagreeing:
            self.log("warning", "provider disagrees with the quorum", provider=provider)
        if not result.ok:
            self.log("warning", "no provider quorum on logs", from_block=from_block, to_block=to_block)
            return [], from_block - 1
        return list(result.accepted), result.safe_through(to_block)

    def with_timestamps(
        self, transfers: Sequence[Transfer], to_block: int
    ) -> Generator[None, None, Tuple[List[Payment], int]]:
        """Attach each log's block timestamp, agreed by a provider quorum and matching its hash."""
        numbers = sorted({t.block_number for t in transfers if t.block_number <= to_block})
        if not numbers:
            return [], to_block
        bodies = [
            rpc_request(i, "eth_getBlockByNumber", [hex(n), False]) for i, n in enumerate(numbers)
        ]
        replies = yield from self.rpc_all(bodies)
        answers: Dict[str, Optional[Dict[int, Tuple[str, int]]]] = {}
        for provider, provider_replies in replies.items():
            blocks = {}
            for number, reply in zip(numbers, provider_replies):
                try:
                    blocks[number] = parse_block(self._body(reply), number)
                except MalformedReply as error:
                    self._provider_failed(provider, reply, str(error))
            answers[provider] = blocks
        agreed = quorum_blocks(answers, self.params.settings.rpc_quorum)
        payments = []
        for transfer in sorted(transfers):
            block = agreed.get(transfer.block_number)
            if transfer.block_number > to_block:
                break
            if block is None or block[0] != transfer.block_hash:
                to_block = transfer.block_number - 1
                break
            payments.append(Payment(transfer, block[1]))
        return payments, to_block

    @staticmethod
    def _body(reply: HttpReply) -> bytes:
        if reply.status == 0:
            raise MalformedReply(f"no reply: {reply.error}")
        if not reply.ok:
            raise MalformedReply(f"HTTP {reply.status}")
        return reply.body
