"""Ports handed to agents: outside the kernel's ephemeral range, free, and never handed out twice."""

import socket

import pytest

from settleproof import ports
from settleproof.ports import HIGH, LOW, free_port


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    """Fifty draws: all different, all in range, each one bindable right now."""
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(LOW <= port <= HIGH < 32768 for port in ports)
    for port in ports[:5]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first draw hits a listening port: the next draw is handed out instead."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        draws = iter([taken, 23456, 23457])
        monkeypatch.setattr(ports.random, "randint", lambda low, high: next(draws))
        assert free_port() in (23456, 23457)
