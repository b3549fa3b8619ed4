"""Per-VIP limits against new-connection floods: the twin of csrc/vipguard.c (docs/DATAPATH.md "VIP guards").

The connection table (conntrack.py) keeps each VIP's count of embryonic (SYN-state) connections here as entries
enter and leave CS_SYN, asks whether a VIP is at its embryonic limit before it adds a SYN-state connection, and
asks the VIP's token bucket before a CONN_MISS upcall. The bucket counts in token-milliseconds (PER_TOKEN a
token), as C does, so both compute the same integers.
"""
from __future__ import annotations

from .. import consts

PER_TOKEN = 1000            # credit of one token: a rate of tokens a second times milliseconds
_UINT32_MAX = 0xFFFFFFFF
STAT_NAMES = ("embryonic", "embryonic_evicted", "embryonic_refused", "upcalls_limited")


class _Guard:
    __slots__ = ("max_embryonic", "upcall_rate", "upcall_burst", "upcall_threshold", "credit", "refilled_ms",
                 "clock_set", "stats")

    def __init__(self):
        self.max_embryonic = self.upcall_rate = self.upcall_burst = self.upcall_threshold = 0
        self.credit = self.refilled_ms = 0
        self.clock_set = False
        self.stats = dict.fromkeys(STAT_NAMES, 0)


def _check_id(vip_id: int) -> None:
    if not 0 < vip_id < consts.VIP_GUARD_MAX_VIPS:
        raise ValueError(f"guard of VIP {vip_id}: VIP id 1..{consts.VIP_GUARD_MAX_VIPS - 1}")


class VipGuards:
    def __init__(self):
        self._guards: dict[int, _Guard] = {}

    def _slot(self, vip_id: int) -> _Guard | None:
        if not 0 < vip_id < consts.VIP_GUARD_MAX_VIPS:
            return None
        g = self._guards.get(vip_id)
        if g is None:
            g = self._guards[vip_id] = _Guard()
        return g

    def set(self, vip_id: int, max_embryonic: int, upcall_rate: int, upcall_burst: int,
            upcall_threshold: int = 0) -> None:
        """`ps_dp_vip_guard_set`: ValueError (EINVAL) for a bad id, a rate or burst above VIP_GUARD_MAX_RATE, or a
        rate with a burst of 0. The bucket starts full; the counters are kept."""
        _check_id(vip_id)
        for name, value in (("max_embryonic", max_embryonic), ("upcall_rate", upcall_rate),
                            ("upcall_burst", upcall_burst), ("upcall_threshold", upcall_threshold)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
                raise ValueError(f"{name} {value!r} is not a 32-bit unsigned integer")
        if upcall_rate > consts.VIP_GUARD_MAX_RATE or upcall_burst > consts.VIP_GUARD_MAX_RATE \
                or (upcall_rate and not upcall_burst):
            raise ValueError(f"guard of VIP {vip_id}: upcall_rate {upcall_rate}, upcall_burst {upcall_burst}")
        g = self._slot(vip_id)
        g.max_embryonic, g.upcall_rate, g.upcall_burst = max_embryonic, upcall_rate, upcall_burst
        g.upcall_threshold = upcall_threshold
        g.credit = upcall_burst * PER_TOKEN
        g.clock_set = False

    def stats(self, vip_id: int) -> dict:
        _check_id(vip_id)
        return dict(self._slot(vip_id).stats)

    def embryonic_count(self, vip_id: int, delta: int) -> None:
        g = self._slot(vip_id)
        if g is not None:
            g.stats["embryonic"] += delta

    def embryonic_full(self, vip_id: int) -> bool:
        g = self._slot(vip_id)
        return g is not None and g.max_embryonic > 0 and g.stats["embryonic"] >= g.max_embryonic

    def count(self, vip_id: int, what: str) -> None:
        """Counts "embryonic_evicted" or "embryonic_refused"."""
        g = self._slot(vip_id)
        if g is not None:
            g.stats[what] += 1

    def admit_upcall(self, vip_id: int, now_ms: int) -> bool:
        """True while the VIP holds fewer embryonic connections than its upcall_threshold (no flood: the bucket
        waits untouched) or its bucket has a token (taken); False when its rate is used up (upcalls_limited)."""
        g = self._slot(vip_id)
        if g is None or not g.upcall_rate or g.stats["embryonic"] < g.upcall_threshold:
            return True
        if not g.clock_set:
            g.refilled_ms, g.clock_set = now_ms, True
        elif now_ms > g.refilled_ms:            # a clock that goes backwards earns nothing
            g.credit = min(g.upcall_burst * PER_TOKEN, g.credit + (now_ms - g.refilled_ms) * g.upcall_rate)
            g.refilled_ms = now_ms
        if g.credit < PER_TOKEN:
            g.stats["upcalls_limited"] += 1
            return False
        g.credit -= PER_TOKEN
        return True
