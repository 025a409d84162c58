"""Block ranges for `eth_getLogs`: fixed-size chunks, refined when a provider refuses one.

Providers cap `eth_getLogs` by block range or by result count, each with its
own error text. A refused chunk is split, using the range the error suggests
when it names one (Alchemy, Infura) or the cap it states, and halved
otherwise. The split applies to every provider, so all of them are compared
on the same boundaries; at a single block there is nothing left to split.
The error text comes from the provider and is not trusted: a suggestion that
does not shrink the chunk from its start is ignored.
"""

import re
from dataclasses import dataclass
from typing import Any, List, Optional


@dataclass(frozen=True, order=True)
class Chunk:
    """The inclusive block range `[first, last]`."""

    first: int
    last: int

    def __post_init__(self) -> None:
        """An empty chunk is a bug in the caller."""
        if self.last < self.first:
            raise ValueError(f"empty chunk {self.first}..{self.last}")

    @property
    def size(self) -> int:
        """How many blocks it holds."""
        return self.last - self.first + 1

    def holds(self, block: int) -> bool:
        """Whether `block` is inside."""
        return self.first <= block <= self.last

    def covers(self, other: "Chunk") -> bool:
        """Whether `other` lies entirely inside."""
        return self.first <= other.first and other.last <= self.last


def split_range(first: int, last: int, max_size: int) -> List[Chunk]:
    """`[first, last]` as consecutive chunks of at most `max_size` blocks (none when empty)."""
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    return [Chunk(lo, min(lo + max_size - 1, last)) for lo in range(first, last + 1, max_size)]


# What providers say when a range or a result count is too large (first 300 characters only).
LIMIT_PATTERNS = re.compile(
    r"more than \d+ results|block range|range is too (wide|large)|too many blocks|"
    r"log response size exceeded|response size|(?<!rate )limit exceeded|query timeout exceeded|"
    r"range too (wide|large)|maximum is set to|limited to a",
    re.IGNORECASE,
)
SUGGESTED_RANGE = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]", re.IGNORECASE)
STATED_CAP = re.compile(
    r"(?:maximum block range:?|max(?:imum)? block range|up to an? |maximum is set to |limited to an? )"
    r"\s*([\d,]+)\s*(k?)\b",
    re.IGNORECASE,
)


def is_limit_error(message: str, data: Any = None) -> bool:
    """Whether a JSON-RPC error refuses the request for its range or result size."""
    if isinstance(data, dict) and "from" in data and "to" in data:
        return True  # Infura's -32005 names a range that works in `data`
    return bool(LIMIT_PATTERNS.search(message[:300]))


def suggested_size(chunk: Chunk, message: str, data: Any = None) -> Optional[int]:
    """The chunk size the error asks for, if it names one that starts at `chunk.first` and shrinks it."""
    message = message[:300]
    sizes = []
    ranges = SUGGESTED_RANGE.findall(message)
    if isinstance(data, dict):
        ranges.append((str(data.get("from")), str(data.get("to"))))
    for low, high in ranges:
        try:
            if int(low, 16) == chunk.first:
                sizes.append(int(high, 16) - chunk.first + 1)
        except ValueError:
            continue
    for digits, thousands in STATED_CAP.findall(message):
        try:
            sizes.append(int(digits.replace(",", "")) * (1000 if thousands else 1))
        except ValueError:
            continue
    fitting = [size for size in sizes if 1 <= size < chunk.size]
    return min(fitting) if fitting else None


def refine(chunk: Chunk, message: str, data: Any = None) -> Optional[List[Chunk]]:
    """Smaller chunks tiling `chunk`, or None when it is a single block and cannot shrink."""
    if chunk.size == 1:
        return None
    size = suggested_size(chunk, message, data) or (chunk.size + 1) // 2
    return split_range(chunk.first, chunk.last, size)


class ChunkPlan:
    """The chunks a range is read in; refining one replaces it by its pieces, in place.

    Chunks only ever get finer, so any chunk handed out earlier is tiled
    exactly by the current chunks inside it (`within`): a late reply for a
    refined chunk can be divided among them.
    """

    def __init__(self, chunks: List[Chunk]) -> None:
        """Start from consecutive chunks."""
        self.chunks = list(chunks)

    def is_current(self, chunk: Chunk) -> bool:
        """Whether `chunk` has not been refined."""
        return chunk in self.chunks

    def within(self, chunk: Chunk) -> List[Chunk]:
        """The current chunks inside `chunk`, in order."""
        return [c for c in self.chunks if chunk.covers(c)]

    def replace(self, chunk: Chunk, pieces: List[Chunk]) -> None:
        """Put `pieces`, which must tile `chunk`, in its place."""
        if pieces[0].first != chunk.first or pieces[-1].last != chunk.last or any(
            a.last + 1 != b.first for a, b in zip(pieces, pieces[1:])
        ):
            raise ValueError(f"pieces do not tile {chunk}")
        at = self.chunks.index(chunk)
        self.chunks[at : at + 1] = pieces
