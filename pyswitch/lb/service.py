"""A virtual service: one VIP, its backends, its scheduler and its client affinity.

It answers one question for the slow path, "which backend gets this new connection?", and keeps what
that answer depends on: the backends' states and weights (changed by health checks and the operator),
the scheduler, and with persistence_s > 0 the client -> backend affinity (IPVS -p).  Affinity outlives
scheduler and weight changes for its lifetime, but never sends a connection to a backend that takes no
new ones (down, draining, weight 0): the client is then scheduled afresh.
"""
from __future__ import annotations

import ipaddress

from ..actions import lb as lb_action
from .backend import Backend
from .schedulers import make_scheduler

MAX_AFFINITY = 1 << 20          # client entries one service remembers; the oldest is dropped beyond


class VirtualService:
    def __init__(self, vip_id: int, config):
        self.id = vip_id
        self.config = config
        self.name = config.name
        self.address = config.address.packed
        self.port = config.port
        self.proto = 6 if config.protocol == "tcp" else 17
        self.l7_pool = False    # a pool of an L7 VIP (pyswitch/l7/service.py): scheduled by the L7 engine
        self.lb_actions = (lb_action(vip_id),)  # what a new connection's first packet is executed with, made once
        self.backends = [Backend(str(b.address), b.port, b.weight) for b in config.backends]
        self._ids = {id(b): i + 1 for i, b in enumerate(self.backends)}   # the list only grows
        self.scheduler = make_scheduler(config.scheduler)
        self.scheduler.on_backends_changed(self.backends)
        self._affinity: dict[bytes, tuple[Backend, float]] = {}    # client IP -> (backend, expires)
        self.counters = {"connections": 0, "no_backend": 0, "affinity_hits": 0, "affinity_dropped": 0,
                         "ring_slots_written": 0}

    def backend(self, address: str, port: int) -> Backend | None:
        for b in self.backends:
            if b.address == address and b.port == port:
                return b
        return None

    def add_backend(self, config) -> Backend:
        """Appends a backend (a reload): those before it keep their places, which connections are tagged with."""
        backend = Backend(str(config.address), config.port, config.weight)
        self.backends.append(backend)
        self._ids[id(backend)] = len(self.backends)
        return backend

    def backend_id(self, backend: Backend) -> int:
        """The backend's tag in the datapath's connections and events: its place in the list, from 1."""
        return self._ids[id(backend)]

    def changed(self) -> None:
        """A backend's state or weight changed: stateful schedulers rebuild their tables."""
        self.scheduler.on_backends_changed(self.backends)

    def choose(self, client_ip: bytes, now: float) -> Backend | None:
        """The backend for a new connection from client_ip, or None if no backend takes new connections."""
        persistence = self.config.persistence_s
        if persistence > 0:
            held = self._affinity.get(client_ip)
            if held is not None and held[1] > now and held[0].accepts_new:
                self._remember(client_ip, held[0], now + persistence)
                self.counters["affinity_hits"] += 1
                return held[0]
        backend = self.scheduler.pick(self.backends, client_ip)
        if backend is None:
            self.counters["no_backend"] += 1
            return None
        if persistence > 0:
            self._remember(client_ip, backend, now + persistence)
        return backend

    def _remember(self, client_ip: bytes, backend: Backend, expires: float) -> None:
        self._affinity.pop(client_ip, None)
        if len(self._affinity) >= MAX_AFFINITY:
            del self._affinity[next(iter(self._affinity))]      # dicts keep insertion order: the oldest
            self.counters["affinity_dropped"] += 1
        self._affinity[client_ip] = (backend, expires)

    def affinities(self, now: float) -> list[tuple[bytes, int, float]]:
        """(client IP, backend index, seconds left) of every live affinity: what an HA peer needs."""
        return [(client, self.backends.index(b), expires - now) for client, (b, expires) in self._affinity.items()
                if expires > now]

    def adopt_affinity(self, client_ip: bytes, index: int, expires: float) -> bool:
        """An affinity the HA master made: this client keeps that backend here too."""
        if not 0 <= index < len(self.backends):
            return False
        self._remember(client_ip, self.backends[index], expires)
        return True

    def expire_affinity(self, now: float) -> None:
        for client in [c for c, (_b, expires) in self._affinity.items() if expires <= now]:
            del self._affinity[client]

    def forget_backend(self, backend: Backend) -> None:
        for client in [c for c, (b, _e) in self._affinity.items() if b is backend]:
            del self._affinity[client]

    def show(self) -> dict:
        return {"name": self.name, "address": str(ipaddress.IPv4Address(self.address)), "port": self.port,
                "protocol": self.config.protocol, "mode": self.config.mode, "scheduler": self.config.scheduler,
                "persistence_s": self.config.persistence_s,
                "backends": [{"address": b.address, "port": b.port, "weight": b.weight, "state": b.state,
                              "active_conns": b.active_conns, "total_conns": b.total_conns,
                              "rtt_ms": _ms(b.rtt_ewma_ms), "probe_rtt_ms": _ms(b.probe_rtt_ms),
                              "conn_rtt_ms": _ms(b.conn_rtt_ms)}
                             for b in self.backends if b.state != "removed" or b.active_conns],
                "counters": dict(self.counters)}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
