"""Maglev rings, the datapath's scheduler for new connections: the twin of csrc/ring.c (docs/DATAPATH.md
"Maglev rings").

A VIP with a ring has a connection's first packet scheduled in the datapath: slot = FNV-1a-64(client address) mod
size names a backend index, and LB adds the connection itself. The slow path (pyswitch/lb/maglev.py) builds the
table and writes only the slots that change. Slots hold RING_EMPTY for none; the Python API shows it as -1.
"""
from __future__ import annotations

import errno

from .. import consts
from ..datapath_types import RingBackend, ring_backend_wire, ring_changes
from ..lb.maglev import fnv1a64

_SLOT_BYTES = 2             # uint16_t slots
_BACKEND_BYTES = 16         # sizeof(struct ps_ring_backend)
_STAT_KEYS = ("rings", "slots_written", "scheduled", "bytes_used")


class _Ring:
    __slots__ = ("slots", "backends")

    def __init__(self, size: int):
        self.slots = [consts.RING_EMPTY] * size
        self.backends: list[RingBackend | None] = []    # by index; None: never set


class Rings:
    def __init__(self):
        self._by_vip: dict[int, _Ring] = {}
        self._stats = dict.fromkeys(_STAT_KEYS, 0)

    def config(self, vip_id: int, size: int) -> None:
        """`ps_dp_ring_config`: a ring of `size` empty slots and no backends for `vip_id`; size 0 removes it."""
        if not 0 < vip_id < consts.RING_MAX_VIPS or not 0 <= size <= consts.RING_MAX_SIZE:
            raise ValueError(f"ring of VIP {vip_id}: VIP id 1..{consts.RING_MAX_VIPS - 1}, "
                             f"size 0..{consts.RING_MAX_SIZE}, not {size}")
        old = self._by_vip.pop(vip_id, None)
        if old is not None:
            self._stats["rings"] -= 1
            self._stats["bytes_used"] -= len(old.slots) * _SLOT_BYTES + len(old.backends) * _BACKEND_BYTES
        if size:
            self._by_vip[vip_id] = _Ring(size)
            self._stats["rings"] += 1
            self._stats["bytes_used"] += size * _SLOT_BYTES

    def backend_set(self, vip_id: int, index: int, backend: RingBackend) -> None:
        """`ps_dp_ring_backend_set`: backend `index` of `vip_id`'s ring."""
        address, tunnel_src, port, mode, backend_id = ring_backend_wire(backend)
        ring = self._ring(vip_id)
        if not 0 <= index < consts.RING_MAX_BACKENDS or mode not in consts.RING_MODES:
            raise ValueError(f"ring backend {index} of VIP {vip_id}: index 0..{consts.RING_MAX_BACKENDS - 1}, "
                             f"mode nat, dsr, ipip or gre, not {mode}")
        if index >= len(ring.backends):
            grow = index + 1 - len(ring.backends)
            ring.backends.extend([None] * grow)
            self._stats["bytes_used"] += grow * _BACKEND_BYTES
        ring.backends[index] = RingBackend(address, port, mode, backend_id, tunnel_src)

    def write(self, vip_id: int, changes) -> None:
        """`ps_dp_ring_write`: (slot, value) pairs, value a backend index or -1; all or none."""
        pairs = ring_changes(changes)
        ring = self._ring(vip_id)
        for slot, _value in pairs:
            if slot >= len(ring.slots):
                raise ValueError(f"ring of VIP {vip_id}: slot {slot} not in 0..{len(ring.slots) - 1}")
        for slot, value in pairs:
            ring.slots[slot] = value
        self._stats["slots_written"] += len(pairs)

    def read(self, vip_id: int) -> list[int] | None:
        """The whole ring, -1 for an empty slot; None if `vip_id` has none."""
        ring = self._by_vip.get(vip_id)
        if ring is None:
            return None
        return [-1 if v == consts.RING_EMPTY else v for v in ring.slots]

    def stats(self) -> dict:
        return dict(self._stats)

    # -- the LB action's side --------------------------------------------------------------------------------------

    def pick(self, vip_id: int, client_addr: bytes) -> RingBackend | None:
        """`ps_ring_pick`: the backend for a client at `client_addr`, or None (no ring, an empty slot, or an index
        never set)."""
        ring = self._by_vip.get(vip_id)
        if ring is None:
            return None
        index = ring.slots[fnv1a64(client_addr) % len(ring.slots)]
        if index == consts.RING_EMPTY or index >= len(ring.backends):
            return None
        return ring.backends[index]

    def count_scheduled(self) -> None:
        self._stats["scheduled"] += 1

    def _ring(self, vip_id: int) -> _Ring:
        ring = self._by_vip.get(vip_id)
        if ring is None:
            raise OSError(errno.ENOENT, f"VIP {vip_id} has no ring")
        return ring
