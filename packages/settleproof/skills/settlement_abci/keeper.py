"""Keeper choice: deterministic from the period, so every agent names the same keeper."""

from typing import Iterable


def keeper_for(participants: Iterable[str], period: int, failovers: int = 0) -> str:
    """`sorted(participants)[(period + failovers) % n]`: each failover moves to the next agent."""
    ordered = sorted(set(participants))
    if not ordered:
        raise ValueError("no participants to choose a keeper from")
    return ordered[(period + failovers) % len(ordered)]
