"""Chunks of an `eth_getLogs` range: they tile it exactly once, before and after any refinement."""

from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.chunking import (
    Chunk,
    ChunkPlan,
    is_limit_error,
    refine,
    split_range,
    suggested_size,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import examples


def assert_tiles(chunks: List[Chunk], first: int, last: int) -> None:
    """Consecutive, non-empty, no gap, no overlap, from `first` to `last`."""
    assert chunks[0].first == first and chunks[-1].last == last
    for a, b in zip(chunks, chunks[1:]):
        assert a.last + 1 == b.first
    assert sum(c.size for c in chunks) == last - first + 1


@examples(200)
@given(st.integers(0, 10**9), st.integers(0, 5000), st.integers(1, 3000))
def test_split_range_covers_each_block_once(first, span, max_size):
    """Every block of the range is in exactly one chunk, and no chunk exceeds the maximum."""
    chunks = split_range(first, first + span, max_size)
    assert_tiles(chunks, first, first + span)
    assert all(c.size <= max_size for c in chunks)
    assert all(c.size == max_size for c in chunks[:-1])


def test_split_range_of_nothing():
    """An empty range has no chunks; a size below 1 is a bug."""
    assert split_range(10, 9, 100) == []
    with pytest.raises(ValueError):
        split_range(1, 2, 0)


MESSAGES = st.sampled_from(
    [
        "query returned more than 10000 results",
        "block range is too wide",
        "exceed maximum block range: {n}",
        "Log response size exceeded. You can make eth_getLogs requests with up to a {n} block range and "
        "no limit on the response size. Based on your parameters, this block range should work: [{lo}, {hi}]",
        "Query returned more than 10000 results. Try with this block range [{lo}, {hi}].",
        "requested too many blocks from 0 to 5000000, maximum is set to {n}",
        "this block range should work: [0x0, {hi}]",  # a start that is not ours: ignored
        "this block range should work: [{lo}, 0xffffffffff]",  # does not shrink: ignored
    ]
)


@st.composite
def refinements(draw):
    """A range, its initial chunks, and a sequence of (which chunk, error text, claimed size) refusals."""
    first = draw(st.integers(0, 10**6))
    last = first + draw(st.integers(0, 1200))
    steps = draw(st.lists(st.tuples(st.integers(0, 10**6), MESSAGES, st.integers(1, 1500)), max_size=15))
    return first, last, draw(st.integers(1, 600)), steps


@examples(200)
@given(refinements())
def test_adaptive_splits_keep_tiling_the_range(data):
    """Whatever providers claim, refined chunks still cover the range exactly once, every chunk ever
    handed out is tiled by the current chunks inside it, and each refinement shrinks its chunk."""
    first, last, max_size, steps = data
    plan = ChunkPlan(split_range(first, last, max_size))
    history = list(plan.chunks)
    for pick, template, n in steps:
        chunk = plan.chunks[pick % len(plan.chunks)]
        message = template.format(n=n, lo=hex(chunk.first), hi=hex(chunk.first + n - 1))
        pieces = refine(chunk, message)
        if chunk.size == 1:
            assert pieces is None
            continue
        assert pieces is not None and len(pieces) >= 2
        assert_tiles(pieces, chunk.first, chunk.last)
        plan.replace(chunk, pieces)
        history.extend(pieces)
        assert_tiles(plan.chunks, first, last)
    for old in history:
        assert_tiles(plan.within(old), old.first, old.last)


@pytest.mark.parametrize(
    "message, data, size",
    [
        ("Log response size exceeded. ... this block range should work: [0x64, 0xc7]", None, 100),
        ("Under the Free tier plan, you can make eth_getLogs requests with up to a 10 block range.", None, 10),
        ("You can make eth_getLogs requests with up to a 2K block range", None, None),  # 2000 >= 1000 blocks
        ("exceed maximum block range: 250", None, 250),
        ("eth_getLogs is limited to a 500 blocks range", None, 500),
        ("query returned more than 10000 results", {"from": "0x64", "to": "0x95"}, 50),
        ("query returned more than 10000 results", None, None),
        ("this block range should work: [0x65, 0x70]", None, None),  # starts elsewhere
    ],
)
def test_suggested_size_reads_real_provider_errors(message, data, size):
    """The size a provider names, for the chunk 100..1099, or None when it names nothing usable."""
    assert suggested_size(Chunk(100, 1099), message, data) == size


def test_halving_without_a_suggestion_and_giving_up_at_one_block():
    """No usable suggestion: halve. One block: nothing left to split."""
    assert refine(Chunk(0, 9), "block range is too wide") == [Chunk(0, 4), Chunk(5, 9)]
    assert refine(Chunk(0, 2), "block range is too wide") == [Chunk(0, 1), Chunk(2, 2)]
    assert refine(Chunk(7, 7), "query returned more than 10000 results") is None


@pytest.mark.parametrize(
    "message, limit",
    [
        ("query returned more than 10000 results", True),
        ("Log response size exceeded.", True),
        ("block range is too wide", True),
        ("exceed maximum block range: 2000", True),
        ("Query timeout exceeded. Consider reducing your block range.", True),
        ("header not found", False),
        ("rate limit exceeded", False),
        ("execution reverted", False),
        ("daily request count exceeded, request rate limited", False),
    ],
)
def test_limit_errors_are_told_from_other_errors(message, limit):
    """Only range and result-size refusals split a chunk; other errors are provider failures."""
    assert is_limit_error(message) is limit


def test_plan_refuses_pieces_that_do_not_tile():
    """A bug that would leave a gap or an overlap stops at once."""
    plan = ChunkPlan([Chunk(0, 9)])
    with pytest.raises(ValueError):
        plan.replace(Chunk(0, 9), [Chunk(0, 3), Chunk(5, 9)])
    with pytest.raises(ValueError):
        Chunk(5, 4)
