"""Agreement across agents on one period's scan: the range, the invoices and the payments.

Every agent reports what its providers' quorum showed (an `Observation`). The
FetchLogsQuorum round applies `agree` to the same collected observations on
every agent, so the result is consensus without asking agents to have seen
exactly the same head. The rules favour safety: nothing is settled that fewer
than `threshold` agents saw, and the range stops before anything that more
agents could still confirm, so a later period looks at it again.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from packages.settleproof.skills.settlement_abci.invoices import Invoice
from packages.settleproof.skills.settlement_abci.transfers import Transfer


Destination = Tuple[str, str]


@dataclass(frozen=True, order=True)
class Payment:
    """A log with its block's timestamp, both agreed by a quorum of providers."""

    transfer: Transfer
    block_timestamp: int

    def to_json(self) -> Dict[str, Any]:
        """A JSON-safe dict."""
        return {"transfer": self.transfer.to_json(), "block_timestamp": self.block_timestamp}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Payment":
        """Inverse of `to_json`."""
        return cls(Transfer.from_json(data["transfer"]), int(data["block_timestamp"]))


@dataclass(frozen=True)
class Observation:
    """One agent's view of `[from_block, to_block]`.

    `to_block < from_block` says the agent could not safely scan anything;
    `invoices is None` says it could not read the merchant's invoices;
    `anchor_hash` is the hash a quorum of its providers gives the checkpoint
    block now ("" when not asked or not known).
    """

    from_block: int
    to_block: int
    payments: Tuple[Payment, ...] = ()
    invoices: Optional[Tuple[Invoice, ...]] = None
    anchor_hash: str = ""

    @property
    def destinations(self) -> Set[Destination]:
        """The (token, receiver) pairs this agent watched."""
        return {(i.token, i.receiver) for i in self.invoices or ()}

    def to_json(self) -> str:
        """Canonical, compact JSON: the same observation always gives the same bytes.

        It travels in a consensus transaction (Tendermint caps one at 1 MB and the framework
        sends it hex-encoded in an RPC request line), so tokens and blocks are listed once and
        payments and invoices are positional arrays: about 200 bytes a payment, 130 an invoice.
        """
        payments = sorted(self.payments)
        tokens = sorted({p.transfer.token for p in payments} | {i.token for i in self.invoices or ()})
        index = {token: n for n, token in enumerate(tokens)}
        blocks = {p.transfer.block_number: (p.transfer.block_hash, p.block_timestamp) for p in payments}
        document = {
            "from_block": self.from_block,
            "to_block": self.to_block,
            "anchor_hash": self.anchor_hash,
            "tokens": tokens,
            "blocks": [[number, *blocks[number]] for number in sorted(blocks)],
            "payments": [
                [t.block_number, t.log_index, t.tx_hash, index[t.token], t.sender, t.receiver, str(t.value)]
                for t in (p.transfer for p in payments)
            ],
            "invoices": None if self.invoices is None else [
                [i.uuid, index[i.token], i.receiver, str(i.amount), i.payer, i.created_block]
                for i in sorted(self.invoices)
            ],
        }
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Observation":
        """Inverse of `to_json`; raises ValueError for anything else (another agent sent it)."""
        try:
            data = json.loads(text)
            tokens = [str(token) for token in data["tokens"]]
            blocks = {int(n): (str(h), int(ts)) for n, h, ts in data["blocks"]}
            payments = tuple(
                Payment(
                    Transfer(int(block), int(log_index), str(tx), blocks[int(block)][0], tokens[token],
                             str(sender), str(receiver), int(value)),
                    blocks[int(block)][1],
                )
                for block, log_index, tx, token, sender, receiver, value in data["payments"]
            )
            invoices = data["invoices"]
            return cls(
                from_block=int(data["from_block"]),
                to_block=int(data["to_block"]),
                payments=payments,
                invoices=None if invoices is None else tuple(
                    Invoice(str(uuid), tokens[token], str(receiver), int(amount),
                            None if payer is None else str(payer), None if created is None else int(created))
                    for uuid, token, receiver, amount, payer, created in invoices
                ),
                anchor_hash=str(data["anchor_hash"]),
            )
        except (TypeError, KeyError, IndexError, ValueError) as error:
            raise ValueError(f"malformed observation: {error!r}") from None


@dataclass(frozen=True)
class Agreement:
    """What the agents agreed for one period."""

    from_block: int
    to_block: int
    payments: Tuple[Payment, ...] = field(default=())
    invoices: Tuple[Invoice, ...] = field(default=())

    def to_json(self) -> str:
        """Canonical JSON for the synchronized state."""
        return json.dumps(
            {
                "from_block": self.from_block,
                "to_block": self.to_block,
                "payments": [p.to_json() for p in self.payments],
                "invoices": [i.to_json() for i in self.invoices],
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> "Agreement":
        """Inverse of `to_json`."""
        data = json.loads(text)
        return cls(
            from_block=int(data["from_block"]),
            to_block=int(data["to_block"]),
            payments=tuple(Payment.from_json(p) for p in data["payments"]),
            invoices=tuple(Invoice.from_json(i) for i in data["invoices"]),
        )


def anchor_verdict(expected: str, reported: Sequence[str], threshold: int) -> Optional[bool]:
    """Does the chain still hold the checkpoint block? True when nothing is known to check or a
    threshold of agents report its stored hash; False when a threshold report another hash (a
    reorg deeper than the confirmation depth); None when neither can be said."""
    if not expected:
        return True
    known = [h for h in reported if h]
    if sum(1 for h in known if h == expected) >= threshold:
        return True
    if sum(1 for h in known if h != expected) >= threshold:
        return False
    return None


def _could_still_reach(votes: int, voters: int, participants: int, threshold: int) -> bool:
    """Whether agents that did not take part could lift `votes` to `threshold`."""
    return votes + (participants - voters) >= threshold


def _kth_highest(values: Sequence[int], k: int) -> int:
    """The k-th highest value: at least k of the values are this high or higher."""
    return sorted(values, reverse=True)[k - 1]


#: Why a period's range stopped short of what a threshold of agents scanned (see `agree_explained`).
TOO_FEW_OBSERVATIONS = "too_few_observations"
TOO_FEW_INVOICE_LISTS = "too_few_invoice_lists"
INVOICE_NOT_SETTLED = "invoice_listed_by_some"
PAYMENT_NOT_CONFIRMED = "payment_seen_by_some"


def agree(
    observations: Sequence[Observation],
    from_block: int,
    threshold: int,
    participants: int,
) -> Agreement:
    """Combine the agents' observations into one agreed scan of `[from_block, to_block]`."""
    return agree_explained(observations, from_block, threshold, participants)[0]


def agree_explained(  # pylint: disable=too-many-locals
    observations: Sequence[Observation],
    from_block: int,
    threshold: int,
    participants: int,
) -> Tuple[Agreement, str]:
    """`agree`, with why the range stopped before what a threshold scanned ("" when it did not).

    Up to `participants - threshold` agents may lie, so what they alone claim counts for
    nothing. What a threshold of agents reports stands whatever the others say:

    * the range ends at the threshold-th highest `to_block`: a liar's tiny or huge range
      cannot move it past or below what honest agents scanned when all of them report;
    * an invoice counts when a threshold lists it. One that only some list (the merchant
      added or closed it between their reads) holds the range before every payment to its
      (token, receiver) and beyond what its listers scanned, but only when more than
      `participants - threshold` list it, so at least one honest agent does: an invoice
      a liar invents is ignored. An honest agent alone with a new invoice is safe to
      ignore too: all agents read the merchant at the same round start, and no payment
      to an invoice created after their reads can be `confirmations` deep yet;
    * a payment counts when a threshold of the agents that watched its receiver and
      scanned its block report it; the range stops before it while the agents that did
      not report could still make a threshold; payments to receivers of no agreed or
      unsettled invoice are ignored (they cannot pay anything).
    """
    relevant = [o for o in observations if o.from_block == from_block]
    nothing = Agreement(from_block, from_block - 1)
    with_invoices = [o for o in relevant if o.invoices is not None]
    if len(relevant) < threshold:
        return nothing, TOO_FEW_OBSERVATIONS
    if len(with_invoices) < threshold:
        return nothing, TOO_FEW_INVOICE_LISTS
    scanned_to = _kth_highest([o.to_block for o in relevant], threshold)
    if scanned_to < from_block:
        return nothing, ""
    honest_minimum = max(1, participants - threshold + 1)

    invoice_votes: Counter = Counter(i for o in with_invoices for i in set(o.invoices or ()))
    invoices = sorted(i for i, n in invoice_votes.items() if n >= threshold)
    unsure: Set[Destination] = set()
    to_block, reason = scanned_to, ""
    for invoice, count in invoice_votes.items():
        if honest_minimum <= count < threshold:
            unsure.add((invoice.token, invoice.receiver))
            listers = [o.to_block for o in with_invoices if invoice in (o.invoices or ())]
            watched_to = _kth_highest(listers, honest_minimum)
            if watched_to < to_block:
                to_block, reason = watched_to, INVOICE_NOT_SETTLED
    agreed_destinations = {(i.token, i.receiver) for i in invoices}

    # A payment's votes and voters are the agents whose scan covered its block, even if they
    # stopped short of `to_block`. Payments outside an agent's own range are not part of its
    # observation.
    votes: Counter = Counter(
        p
        for o in with_invoices
        for p in set(o.payments)
        if from_block <= p.transfer.block_number <= min(o.to_block, to_block)
    )
    accepted: List[Payment] = []
    stop_at, stop_reason = to_block + 1, reason
    watched = [(o.to_block, o.destinations) for o in with_invoices]  # sets built once, not per payment
    for payment in sorted(votes):
        transfer = payment.transfer
        destination = (transfer.token, transfer.receiver)
        if destination in unsure:
            if transfer.block_number < stop_at:
                stop_at, stop_reason = transfer.block_number, INVOICE_NOT_SETTLED
            continue
        if destination not in agreed_destinations:
            continue
        voters = sum(
            1
            for scanned, destinations in watched
            if scanned >= transfer.block_number and destination in destinations
        )
        if votes[payment] >= threshold:
            accepted.append(payment)
        elif _could_still_reach(votes[payment], voters, participants, threshold) and transfer.block_number < stop_at:
            stop_at, stop_reason = transfer.block_number, PAYMENT_NOT_CONFIRMED
    to_block = max(stop_at - 1, from_block - 1)
    payments = tuple(p for p in accepted if p.transfer.block_number <= to_block)
    return Agreement(from_block, to_block, payments, tuple(invoices)), (stop_reason if to_block < scanned_to else "")
