"""Merchant invoices: parsed strictly, entry by entry, so one bad entry never hides the others."""

import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple


ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
DECIMAL_RE = re.compile(r"^[0-9]+$")
MAX_UUID_LENGTH = 128
#: A uuid becomes part of the webhook id, which travels in HTTP headers: no CR, LF, space or other
#: separator may reach them. URL-safe characters (RFC 3986 unreserved) and ':' only.
UUID_RE = re.compile(r"[A-Za-z0-9._~:-]{1,%d}" % MAX_UUID_LENGTH)
MAX_UINT256 = 2**256 - 1
#: Error lines reported for one list; a list of a million bad entries still gives this many and a count.
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True, order=True)
class Invoice:
    """An open invoice as the merchant lists it; addresses lower-cased for matching."""

    uuid: str
    token: str
    receiver: str
    amount: int
    payer: Optional[str] = None
    created_block: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        """A JSON-safe dict (amount as a decimal string, as in the merchant format)."""
        data = asdict(self)
        data["amount"] = str(self.amount)
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Invoice":
        """Inverse of `to_json`, for values that were validated before."""
        return cls(
            uuid=data["uuid"],
            token=data["token"],
            receiver=data["receiver"],
            amount=int(data["amount"]),
            payer=data.get("payer"),
            created_block=data.get("created_block"),
        )


def _shown(value: Any) -> str:
    """A value as an error line shows it: its repr, cut (an entry's field can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 140 else text[:140] + "..."


class InvalidInvoice(ValueError):
    """One entry of the merchant's list is malformed; the message names the field."""


def _address(entry: Dict[str, Any], field: str, optional: bool = False) -> Optional[str]:
    value = entry.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not ADDRESS_RE.fullmatch(value):
        raise InvalidInvoice(f"field '{field}': {_shown(value)} is not a 20-byte 0x address")
    return value.lower()


def parse_invoice(entry: Any) -> Invoice:
    """Validate one entry of the merchant's list; unknown extra fields are ignored."""
    if not isinstance(entry, dict):
        raise InvalidInvoice(f"entry is a {type(entry).__name__}, not an object")
    uuid = entry.get("uuid")
    if not isinstance(uuid, str) or not UUID_RE.fullmatch(uuid):
        raise InvalidInvoice(
            f"field 'uuid': {str(uuid)[:140]!r} is not 1-{MAX_UUID_LENGTH} characters of [A-Za-z0-9._~:-]"
        )
    amount = entry.get("amount")
    if not isinstance(amount, str) or not DECIMAL_RE.fullmatch(amount):
        raise InvalidInvoice(f"field 'amount': {_shown(amount)} is not a decimal string")
    if not 0 < int(amount) <= MAX_UINT256:
        raise InvalidInvoice(f"field 'amount': {amount} is not in 1..2**256-1")
    created_block = entry.get("created_block")
    if created_block is not None and (
        isinstance(created_block, bool)
        or not isinstance(created_block, int)
        or created_block < 0
    ):
        raise InvalidInvoice(
            f"field 'created_block': {_shown(created_block)} is not a block number or null"
        )
    return Invoice(
        uuid=uuid,
        token=str(_address(entry, "token")),
        receiver=str(_address(entry, "receiver")),
        amount=int(amount),
        payer=_address(entry, "payer", optional=True),
        created_block=created_block,
    )


def parse_invoices(document: Any) -> Tuple[List[Invoice], List[str]]:
    """Parse the merchant's reply: the valid invoices sorted by uuid, and error lines for bad entries.

    A uuid listed twice keeps neither copy: the merchant's intent is ambiguous.
    At most `MAX_REPORTED_ERRORS` entries are described, then one line counts the rest.
    """
    if not isinstance(document, list):
        raise InvalidInvoice(f"reply is a {type(document).__name__}, not a JSON array")
    valid: Dict[str, Invoice] = {}
    duplicated = set()
    errors: List[str] = []
    bad = 0
    for position, entry in enumerate(document):
        try:
            invoice = parse_invoice(entry)
        except InvalidInvoice as error:
            bad += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                label = entry.get("uuid") if isinstance(entry, dict) else None
                errors.append(f"invoice #{position} (uuid={_shown(label)}) skipped: {error}")
            continue
        if invoice.uuid in valid or invoice.uuid in duplicated:
            duplicated.add(invoice.uuid)
            valid.pop(invoice.uuid, None)
            bad += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(f"invoice #{position} (uuid={invoice.uuid!r}) skipped: field 'uuid': listed twice")
            continue
        valid[invoice.uuid] = invoice
    if bad > len(errors):
        errors.append(f"{bad - len(errors)} more invoice entries skipped ({bad} in all)")
    return sorted(valid.values()), errors
