"""The rounds' door: each round parses its payloads with `payload_checks` before accepting them.

`check_payload` runs at DeliverTx, on every agent, against the same
synchronized state (the framework's CheckTx only decodes a transaction and
checks its signature, so crafted payloads do reach blocks), so a refused payload
is refused by all honest agents alike and never reaches `end_block`: it counts
as its sender's abstention. Each refusal is logged once per round with the sender,
the round and the reason, and counted in `byzantine_payloads_total`.
"""

import logging
import math
from typing import Any, Set, Tuple

from packages.settleproof.skills.settlement_abci.payload_checks import InvalidPayload
from packages.valory.skills.abstract_round_abci.base import BaseTxPayload, TransactionNotValidError


class CheckedPayloadRound:
    """Mixin before a framework round class: `parse_payload` must accept a payload before it counts."""

    context: Any
    synchronized_data: Any

    def parse_payload(self, payload: BaseTxPayload) -> None:
        """Raise `InvalidPayload` for anything no honest agent would send in this round."""
        raise NotImplementedError

    def check_payload(self, payload: BaseTxPayload) -> None:
        """The framework's checks (round, sender, one payload each), then ours."""
        super().check_payload(payload)  # type: ignore[misc]
        try:
            self.parse_payload(payload)
        except InvalidPayload as error:
            self.refuse(payload.sender, error)

    def refuse(self, sender: str, error: InvalidPayload) -> None:
        """Log and count the refusal (once per sender and reason in this round), then refuse."""
        round_id = type(self).auto_round_id()  # type: ignore[attr-defined]
        refused: Set[Tuple[str, str]] = self.__dict__.setdefault("_refused", set())
        if (sender, error.reason) not in refused:
            refused.add((sender, error.reason))
            self.context.metrics.consensus.byzantine_payloads.labels(round_id, error.reason).inc()
            self.log_line(
                logging.WARNING, "payload refused",
                round=round_id, sender=sender, reason=error.reason, detail=str(error)[:300],
            )
        raise TransactionNotValidError(f"{round_id}: payload from {sender} refused: {error}")

    def log_line(self, level: int, message: str, **fields: object) -> None:
        """One structured line on this agent's log (the JSON formatter writes `fields` as keys)."""
        logger = getattr(self.context.logger, "logger", self.context.logger)
        logger.log(level, message, extra=fields)

    def round_block_time(self) -> int:
        """Unix seconds of the block that started this round: what honest agents stamp their payloads with."""
        timestamp = self.context.state.round_sequence.last_round_transition_timestamp
        return int(math.floor(timestamp.timestamp()))
