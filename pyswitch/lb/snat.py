"""Source ports for full NAT: each connection gets a (switch address, port) of its own toward its backend.

In fullnat mode the backend sees the switch's address as the client, so two clients that happen to use
the same source port must still be told apart: the pair (switch address, source port) is unique per
(protocol, backend address, backend port).  Ports come round robin from a range that leaves out the
well-known ports and the health checker's range, so a recently freed port is reused as late as possible
(a backend may still hold the old connection in TIME_WAIT).  Each round starts at a random port (as
RFC 6056 recommends): a switch restarted within a minute would otherwise hand out the very ports its
predecessor used, and every SYN would meet the backend's TIME_WAIT entry of the old connection (Linux
answers it with an ACK for the old one; the connection waits for a SYN retransmission).
"""
from __future__ import annotations

import random

FIRST_PORT = 1024
LAST_PORT = 60999               # 61000-65535 belong to the health checker's probes


class PortsExhausted(Exception):
    """Every port toward one backend is in use."""


class SnatPorts:
    def __init__(self, first: int = FIRST_PORT, last: int = LAST_PORT, random_start: bool = True):
        self.first, self.last = first, last
        self._random_start = random_start
        self._used: dict[tuple, set[int]] = {}      # (proto, snat addr, backend addr, backend port) -> ports
        self._next: dict[tuple, int] = {}
        self.counters = {"allocated": 0, "released": 0, "exhausted": 0}

    def allocate(self, proto: int, snat: bytes, backend: bytes, backend_port: int) -> int:
        key = (proto, snat, backend, backend_port)
        used = self._used.setdefault(key, set())
        span = self.last - self.first + 1
        if len(used) >= span:
            self.counters["exhausted"] += 1
            raise PortsExhausted(f"all {span} source ports toward this backend are in use")
        port = self._next.get(key)
        if port is None:
            port = self.first + random.randrange(span) if self._random_start else self.first
        while port in used:
            port = port + 1 if port < self.last else self.first
        used.add(port)
        self._next[key] = port + 1 if port < self.last else self.first
        self.counters["allocated"] += 1
        return port

    def reserve(self, proto: int, snat: bytes, backend: bytes, backend_port: int, port: int) -> None:
        """Marks a port in use that someone else allocated (an HA peer's connection, synced here)."""
        used = self._used.setdefault((proto, snat, backend, backend_port), set())
        if port not in used:
            used.add(port)
            self.counters["allocated"] += 1

    def release(self, proto: int, snat: bytes, backend: bytes, backend_port: int, port: int) -> None:
        key = (proto, snat, backend, backend_port)
        used = self._used.get(key)
        if used is not None and port in used:
            used.discard(port)
            self.counters["released"] += 1
            if not used:
                del self._used[key]

    def in_use(self) -> int:
        return sum(len(u) for u in self._used.values())
