"""An L7 VIP as the engine sees it: its content rules and its pools, each pool a service of its own.

A pool is a VirtualService (pyswitch/lb/service.py) with its own id, scheduler, backends and health checks,
so everything the L4 stage does for backends (choosing, counting connections, health, `show vips`) works for a
pool unchanged.  A pool has no flow toward the VIP: the VIP's own flow sends new clients to the engine, and a
spliced connection carries its pool's id, so the datapath's events about it reach the pool's backends.
"""
from __future__ import annotations

import hashlib
import re
from typing import Optional

from ..config import BackendConfig, VipConfig
from ..lb.backend import Backend
from ..lb.service import VirtualService
from .rules import Match, Rule, RuleSet


def pool_config(vip: VipConfig, pool) -> VipConfig:
    """The VipConfig of one pool of an L7 VIP: the VIP's address and port, the pool's scheduler, backends and
    health check; backends see the client's address (nat)."""
    return VipConfig(name=f"{vip.name}/{pool.name}", address=vip.address, port=vip.port, protocol="tcp",
                     mode="nat", scheduler=pool.scheduler, max_embryonic=vip.max_embryonic,
                     flood_threshold=vip.flood_threshold, upcall_rate=vip.upcall_rate,
                     backends=[BackendConfig(address, port) for address, port in pool.backends],
                     health=pool.health)


def rule_set(vip: VipConfig) -> RuleSet:
    """The config's rules as the matcher takes them: bytes for what is compared with request bytes."""
    rules = []
    for i, r in enumerate(vip.l7.rules):
        rules.append(Rule(pool=r.pool, name=f"rule {i + 1}", host=r.host,
                          path_prefix=r.path_prefix.encode() if r.path_prefix is not None else None,
                          path_regex=re.compile(r.path_regex.pattern.encode()) if r.path_regex else None,
                          header=(r.header[0].encode(), r.header[1].encode()) if r.header else None,
                          cookie=(r.cookie[0].encode(), r.cookie[1].encode()) if r.cookie else None))
    return RuleSet(rules, vip.l7.default_pool)


def persistence_value(backend: Backend) -> bytes:
    """The persistence cookie's value that names `backend`: a digest of its address and port, the same on every
    switch and across restarts (an HA peer or a restarted switch keeps the client's backend)."""
    return hashlib.blake2b(f"{backend.address}:{backend.port}".encode(), digest_size=6).hexdigest().encode()


class L7Service:
    def __init__(self, vip: VirtualService, pools: dict[str, VirtualService], default_wscale: int):
        self.vip = vip
        self.config = vip.config
        self.l7 = vip.config.l7
        self.tls = vip.config.mode == "l7-tls"
        self.rules = rule_set(vip.config)
        self.pools = pools
        self.cookie = self.l7.persistence.cookie.encode() if self.l7.persistence else None
        self.insert = bool(self.l7.persistence and self.l7.persistence.insert)
        self.counters = {"requests": 0, "by_default_pool": 0, "no_pool": 0, "no_backend": 0,
                         "persistence_hits": 0}
        self.rule_hits = {rule.name: 0 for rule in self.rules.rules}
        self.open_sessions = 0          # sessions the engine holds for this VIP: at most its max_embryonic
        self.wscale = default_wscale    # offered to clients: the smallest window scale its backends have shown
        self._wscales: dict[tuple[str, int], int] = {}

    def pool_of(self, match: Match) -> Optional[VirtualService]:
        if match.rule is None:
            self.counters["by_default_pool"] += 1
        else:
            self.rule_hits[match.rule] += 1
        return self.pools.get(match.pool) if match.pool is not None else None

    def persistent_backend(self, pool: VirtualService, value: Optional[bytes]) -> Optional[Backend]:
        """The backend of `pool` that a persistence cookie's value names, if it takes new connections."""
        if value is None:
            return None
        for backend in pool.backends:
            if backend.accepts_new and persistence_value(backend) == value:
                self.counters["persistence_hits"] += 1
                return backend
        return None

    def learn_wscale(self, backend: tuple[str, int], wscale: int) -> None:
        self._wscales[backend] = wscale
        self.wscale = min(self._wscales.values())

    def show(self) -> dict:
        return {"rules": [{"name": r.name, "pool": r.pool, "hits": self.rule_hits[r.name]} for r in self.rules.rules],
                "default_pool": self.rules.default_pool, "pools": sorted(self.pools), "window_scale": self.wscale,
                **self.counters}
