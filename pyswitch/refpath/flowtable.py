"""The flow table: the twin of csrc/flowtable.c (docs/DATAPATH.md "Flow table").

Flows with one (mask, priority) form a subtable: a dict from the masked key (as an int, since
`int.from_bytes(key) & mask` is one fast operation) to the flow. A lookup tries the subtables by priority, highest
first, and between equal priorities by creation order, and takes the first hit. An exact-match cache (full key ->
flow) sits in front, like C's EMC; it is emptied whenever a flow appears or disappears, so it never changes a
lookup's answer, only whether the hit counts in emc_hits or masked_hits.

Recency is an OrderedDict of flows, least recent first. A hit moves a flow to the end only when
`now // LRU_GRANULE_MS` differs from that of its last recency update, as C does to keep hits cheap.
"""
from __future__ import annotations

import errno
import time
from collections import OrderedDict

from .. import consts
from ..datapath_types import FlowInfo, FlowTableError
from .actions import validate_actions

_STAT_KEYS = ("flows", "max_flows", "subtables", "inserts", "modifies", "deletes", "expired", "evictions",
              "refused", "emc_hits", "masked_hits", "misses")


def now_ms() -> int:
    """CLOCK_MONOTONIC in milliseconds, what C reads for now_ms = -1."""
    return int(time.monotonic() * 1000)


class Flow:
    __slots__ = ("key", "mask", "priority", "actions", "idle_timeout_ms", "cookie", "packets", "bytes", "used_ms",
                 "granule", "subtable", "key_int", "output_port")

    def set_actions(self, actions: tuple) -> None:
        self.actions = actions
        # The datapath's shortcut for the commonest list, a single OUTPUT: its port, else -1.
        only = actions[0] if len(actions) == 1 else None
        self.output_port = only.arg if only is not None and only.type == consts.ACT_OUTPUT else -1

    def info(self) -> FlowInfo:
        return FlowInfo(self.key, self.mask, self.priority, self.idle_timeout_ms, self.cookie, self.packets,
                        self.bytes, self.used_ms, self.actions)


class Subtable:
    __slots__ = ("mask", "mask_int", "priority", "seq", "flows")

    def __init__(self, mask: bytes, priority: int, seq: int):
        self.mask = mask
        self.mask_int = int.from_bytes(mask, "big")
        self.priority = priority
        self.seq = seq                  # creation order: breaks ties between equal priorities
        self.flows: dict[int, Flow] = {}


def _check_key(name: str, value) -> bytes:
    value = bytes(value)
    if len(value) != consts.KEY_SIZE:
        raise ValueError(f"{name} must be {consts.KEY_SIZE} bytes, not {len(value)}")
    return value


class FlowTable:
    def __init__(self, max_flows: int = 65536, emc_entries: int = 8192):
        self.max_flows = max_flows
        self.emc_entries = emc_entries
        self._subtables: dict[tuple[bytes, int], Subtable] = {}
        self._order: list[Subtable] = []        # lookup order: priority desc, then creation order
        self._lru: OrderedDict[Flow, None] = OrderedDict()
        self._emc: dict[bytes, Flow] = {}
        self._seq = 0
        self._stats = dict.fromkeys(_STAT_KEYS, 0)

    def __len__(self) -> int:
        return len(self._lru)

    # -- changes -------------------------------------------------------------------------------------------------

    def put(self, key, mask, priority: int, actions, idle_timeout_ms: int = 0, cookie: int = 0,
            now_ms: int = -1) -> int:
        """Install or replace a flow; 0 for a new flow, 1 for a replaced one. Raises FlowTableError."""
        key = _check_key("key", key)
        mask = _check_key("mask", mask)
        stats = self._stats
        try:
            actions = validate_actions(actions)
        except FlowTableError:
            stats["refused"] += 1
            raise
        if now_ms == -1:
            now_ms = _now()
        mask_int = int.from_bytes(mask, "big")
        key_int = int.from_bytes(key, "big") & mask_int
        sub_id = (mask, priority)
        sub = self._subtables.get(sub_id)
        if sub is not None:
            flow = sub.flows.get(key_int)
            if flow is not None:
                # A modify keeps packets, bytes and used_ms: it is neither an insertion nor a hit.
                flow.set_actions(actions)
                flow.idle_timeout_ms = idle_timeout_ms
                flow.cookie = cookie
                self._touch(flow, now_ms)
                stats["modifies"] += 1
                return 1
        elif len(self._subtables) >= consts.MAX_SUBTABLES:
            # Checked before any eviction: a refused put changes nothing but `refused`.
            stats["refused"] += 1
            raise FlowTableError(errno.ENOSPC, f"more than {consts.MAX_SUBTABLES} subtables")
        if len(self._lru) >= self.max_flows and self._lru:
            victim = self._victim()
            if victim is None:
                stats["refused"] += 1
                raise FlowTableError(errno.ENOSPC, f"all {len(self._lru)} flows are permanent")
            self._remove(victim)
            stats["evictions"] += 1
            # The victim may have been the last flow of the subtable this flow goes into.
            sub = self._subtables.get(sub_id)
        if sub is None:
            sub = self._new_subtable(mask, priority)
        flow = Flow()
        flow.key = key_int.to_bytes(consts.KEY_SIZE, "big")
        flow.key_int = key_int
        flow.mask = mask
        flow.priority = priority
        flow.set_actions(actions)
        flow.idle_timeout_ms = idle_timeout_ms
        flow.cookie = cookie
        flow.packets = 0
        flow.bytes = 0
        flow.used_ms = now_ms
        flow.granule = now_ms // consts.LRU_GRANULE_MS
        flow.subtable = sub
        sub.flows[key_int] = flow
        self._lru[flow] = None
        self._emc.clear()
        stats["inserts"] += 1
        return 0

    def delete(self, key, mask, priority: int) -> bool:
        """Remove the flow with exactly this (key & mask, mask, priority)."""
        mask = _check_key("mask", mask)
        sub = self._subtables.get((mask, priority))
        if sub is None:
            return False
        flow = sub.flows.get(int.from_bytes(_check_key("key", key), "big") & sub.mask_int)
        if flow is None:
            return False
        self._remove(flow)
        self._stats["deletes"] += 1
        return True

    def delete_loose(self, key, mask) -> int:
        """Remove every flow at least as specific as `mask` that agrees with `key` on it."""
        mask_int = int.from_bytes(_check_key("mask", mask), "big")
        want = int.from_bytes(_check_key("key", key), "big") & mask_int
        doomed = [flow for sub in self._order if sub.mask_int & mask_int == mask_int
                  for flow in sub.flows.values() if flow.key_int & mask_int == want]
        for flow in doomed:
            self._remove(flow)
        self._stats["deletes"] += len(doomed)
        return len(doomed)

    def flush(self) -> None:
        self._stats["deletes"] += len(self._lru)
        self._subtables.clear()
        self._order.clear()
        self._lru.clear()
        self._emc.clear()

    def expire(self, now_ms: int = -1, max_flows: int = 1024) -> list[int]:
        """Remove up to `max_flows` idle flows, least recent first; return their cookies."""
        if now_ms == -1:
            now_ms = _now()
        doomed = []
        if max_flows > 0:
            for flow in self._lru:
                if flow.idle_timeout_ms > 0 and now_ms - flow.used_ms >= flow.idle_timeout_ms:
                    doomed.append(flow)
                    if len(doomed) == max_flows:
                        break
        for flow in doomed:
            self._remove(flow)
        self._stats["expired"] += len(doomed)
        return [flow.cookie for flow in doomed]

    # -- lookup --------------------------------------------------------------------------------------------------

    def lookup(self, key, size: int, now_ms: int = -1) -> FlowInfo | None:
        flow = self.lookup_flow(_check_key("key", key), size, now_ms)
        return None if flow is None else flow.info()

    def lookup_flow(self, key: bytes, size: int, now_ms: int = -1) -> Flow | None:
        """`lookup` returning the flow itself, for the datapath (no FlowInfo built per packet)."""
        if now_ms == -1:
            now_ms = _now()
        stats = self._stats
        flow = self._emc.get(key)
        if flow is not None:
            stats["emc_hits"] += 1
        else:
            key_int = int.from_bytes(key, "big")
            for sub in self._order:
                flow = sub.flows.get(key_int & sub.mask_int)
                if flow is not None:
                    break
            if flow is None:
                stats["misses"] += 1
                return None
            stats["masked_hits"] += 1
            if self.emc_entries > 0:
                if len(self._emc) >= self.emc_entries:
                    self._emc.clear()
                self._emc[bytes(key)] = flow
        flow.packets += 1
        flow.bytes += size
        flow.used_ms = now_ms
        granule = now_ms // consts.LRU_GRANULE_MS
        if granule != flow.granule:
            flow.granule = granule
            self._lru.move_to_end(flow)
        return flow

    # -- reading -------------------------------------------------------------------------------------------------

    def dump(self) -> list[FlowInfo]:
        """All flows, in lookup order (subtables by priority then age, flows by insertion). The contract does
        not order a dump; tests compare dumps as sets."""
        return [flow.info() for sub in self._order for flow in sub.flows.values()]

    def stats(self) -> dict:
        stats = dict(self._stats)
        stats["flows"] = len(self._lru)
        stats["max_flows"] = self.max_flows
        stats["subtables"] = len(self._subtables)
        return stats

    # -- internals -----------------------------------------------------------------------------------------------

    def _touch(self, flow: Flow, now_ms: int) -> None:
        flow.granule = now_ms // consts.LRU_GRANULE_MS
        self._lru.move_to_end(flow)

    def _victim(self) -> Flow | None:
        """The least recently used flow with an idle timeout; permanent flows met on the way move to the
        most recent end (as flowtable.c's lru_victim does, so that evictions stay the same), and are never
        evicted: a flood of new flows must not take the routing flows away."""
        for _ in range(len(self._lru)):
            flow = next(iter(self._lru))
            if flow.idle_timeout_ms:
                return flow
            self._lru.move_to_end(flow)
        return None

    def _new_subtable(self, mask: bytes, priority: int) -> Subtable:
        self._seq += 1
        sub = Subtable(mask, priority, self._seq)
        self._subtables[(mask, priority)] = sub
        self._order.append(sub)
        self._order.sort(key=lambda s: (-s.priority, s.seq))
        return sub

    def _remove(self, flow: Flow) -> None:
        sub = flow.subtable
        del sub.flows[flow.key_int]
        del self._lru[flow]
        self._emc.clear()
        if not sub.flows:
            del self._subtables[(sub.mask, sub.priority)]
            self._order.remove(sub)


_now = now_ms
