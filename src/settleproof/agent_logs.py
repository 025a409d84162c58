"""Reading the agents' JSON log lines: the agent's `logging_config` writes one object per line.

Our own lines carry their fields as keys (`round`, `period`, `agent`, `tx_hash`, `block`, ...);
the framework's lines carry only `message`. An agent's output also holds lines that are not
records (the CLI's banner, a crash's traceback): they parse to None.
"""

import json
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

Record = Dict[str, Any]


def parse(line: str) -> Optional[Record]:
    """The line's record, or None for a line that is not one."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def matches(record: Optional[Record], message: str, fields: Dict[str, Any]) -> bool:
    """The record has this message and these field values."""
    return (
        record is not None
        and record.get("message") == message
        and all(record.get(key) == value for key, value in fields.items())
    )


def event(message: str, **fields: Any) -> Callable[[str], Optional[Record]]:
    """A predicate for `AgentProcess.wait_for`: the record of a line with this message and fields."""

    def found(line: str) -> Optional[Record]:
        record = parse(line)
        return record if matches(record, message, fields) else None

    return found


def events(lines: Iterable[str], message: str, **fields: Any) -> List[Record]:
    """Every record among `lines` with this message and fields, in order."""
    return [record for record in map(parse, lines) if matches(record, message, fields)]


def checkpoint_at_least(block: int) -> Callable[[str], Optional[int]]:
    """A predicate for `AgentProcess.wait_for`: the block of a checkpoint vote at or beyond `block`."""

    def found(line: str) -> Optional[int]:
        record = parse(line)
        if not matches(record, "checkpoint", {}) or not isinstance(record.get("block"), int):
            return None
        return record["block"] if record["block"] >= block else None

    return found


def latest_keeper(logs: Iterable[Iterable[str]]) -> Tuple[int, str]:
    """The latest period the agents' logs name a keeper for, and that keeper's address.

    Raises ValueError when the agents named different keepers for it (they agree by consensus).
    """
    named: Dict[int, Set[str]] = {}
    for lines in logs:
        for record in events(lines, "keeper selected"):
            named.setdefault(record["period"], set()).add(record["keeper"].lower())
    period = max(named)
    (keeper,) = named[period]
    return period, keeper
