"""Ports for servers that other processes bind later (the agents' ABCI and /metrics servers).

Why not port 0: the kernel hands out ephemeral ports (32768-60999 on Linux) to
outgoing connections too, and between our probe and the agent's bind, any
HTTP or RPC client on the machine may take the port as its local end, so the
agent fails with "address already in use". Ports are drawn below that range
instead, probed, and never handed out twice by one process.
"""

import random
import socket
import threading
from typing import Set

LOW, HIGH = 20000, 32767  # below Linux's default ephemeral range
_given: Set[int] = set()
_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port below the ephemeral range that nobody listens on now and this process never gave out."""
    with _lock:
        for _ in range(1000):
            port = random.randint(LOW, HIGH)  # nosec: not a secret, just spreading the draws
            if port in _given:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind((host, port))
                except OSError:
                    continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free port in {LOW}-{HIGH} on {host}")
