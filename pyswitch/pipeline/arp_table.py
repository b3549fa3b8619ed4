"""The ARP table: which MAC and port an IPv4 neighbor on a VLAN has, and what waits for it.

States, as in a router's neighbor cache:
    incomplete  a request is out; routed packets for the neighbor wait in a bounded queue
    reachable   resolved; the fast path routes to it
    probe       resolved but older than reachable_s: still used, re-asked by unicast
An incomplete or probed entry that stays unanswered for `retries` requests (one a second) fails: the
entry goes, and what waited for it is dropped (counted) and answered with ICMP host unreachable.

Bounded three ways, each refusal counted: `max_entries` neighbors (`arp_table_full`), `queue_len` packets
waiting per neighbor and `pending_max` waiting in all (`arp_queue_dropped`), so that a scan of a large
connected subnet cannot hold a frame for every address it tries.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RETRY_S = 1.0               # between two requests for one neighbor


@dataclass
class ArpEntry:
    mac: bytes | None                   # None while incomplete
    port_no: int | None
    state: str                          # incomplete | reachable | probe
    updated: float                      # when it was last resolved (or created)
    tries: int = 0                      # requests sent since the last answer
    next_try: float = 0.0
    pending: deque = field(default_factory=deque)   # (in_port, frame, vnet, key, actions) waiting for the MAC


class ArpTable:
    def __init__(self, max_entries: int, reachable_s: float, retries: int, queue_len: int,
                 pending_max: int = 4096):
        self.max_entries = max_entries
        self.reachable_s = reachable_s
        self.retries = retries
        self.queue_len = queue_len
        self.pending_max = pending_max      # packets waiting for any neighbor, all queues together
        self.n_pending = 0
        self._entries: dict[tuple[int, bytes], ArpEntry] = {}
        self.counters = {"arp_requests_sent": 0, "arp_replies_sent": 0, "arp_resolved": 0, "arp_failed": 0,
                         "arp_queue_dropped": 0, "arp_timeout_dropped": 0, "arp_table_full": 0,
                         "arp_spoofed": 0, "gratuitous_arp_sent": 0}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, vlan: int, ip: bytes) -> ArpEntry | None:
        return self._entries.get((vlan, ip))

    def entries(self):
        return list(self._entries.items())

    def resolved(self, vlan: int, ip: bytes, mac: bytes, port_no: int, now: float,
                 create: bool = True) -> tuple[bool, list]:
        """Record an answer (or a sighting) of `ip` at `mac` on `port_no`.

        Returns (changed, pending): whether the fast path's neighbor entry must be (re)written, and the
        packets that waited for it.  Creates the entry if `create` and there is room.
        """
        entry = self._entries.get((vlan, ip))
        if entry is None:
            if not create:
                return False, []
            if len(self._entries) >= self.max_entries:
                self.counters["arp_table_full"] += 1
                return False, []
            entry = self._entries[(vlan, ip)] = ArpEntry(None, None, "incomplete", now)
        changed = (entry.mac, entry.port_no) != (mac, port_no)
        if entry.state == "incomplete":
            self.counters["arp_resolved"] += 1
        entry.mac, entry.port_no, entry.state = mac, port_no, "reachable"
        entry.updated, entry.tries = now, 0
        pending = list(entry.pending)
        entry.pending.clear()
        self.n_pending -= len(pending)
        return changed, pending

    def refresh(self, vlan: int, ip: bytes, mac: bytes, port_no: int, now: float) -> bool:
        """A sighting of a known neighbor (gratuitous ARP, a request it sent): update it, never create it.
        Returns whether the fast path's entry must be rewritten."""
        entry = self._entries.get((vlan, ip))
        if entry is None:
            return False
        changed, _ = self.resolved(vlan, ip, mac, port_no, now)
        return changed

    def answered(self, vlan: int, ip: bytes, mac: bytes, port_no: int, now: float) -> tuple[bool, list]:
        """An ARP reply to the switch: resolves a neighbor it asked for, but never creates one, so that
        unsolicited replies for many addresses cannot fill the table (Linux's arp_accept = 0)."""
        return self.resolved(vlan, ip, mac, port_no, now, create=False)

    def want(self, vlan: int, ip: bytes, now: float) -> ArpEntry | None:
        """The entry for a neighbor a packet needs; a new one starts incomplete (the caller asks for it)."""
        entry = self._entries.get((vlan, ip))
        if entry is not None:
            return entry
        if len(self._entries) >= self.max_entries:
            self.counters["arp_table_full"] += 1
            return None
        entry = self._entries[(vlan, ip)] = ArpEntry(None, None, "incomplete", now, next_try=now)
        return entry

    def hold(self, entry: ArpEntry, packet) -> bool:
        if len(entry.pending) >= self.queue_len or self.n_pending >= self.pending_max:
            self.counters["arp_queue_dropped"] += 1
            return False
        entry.pending.append(packet)
        self.n_pending += 1
        return True

    def due(self, now: float):
        """What the timers ask for now: yields (vlan, ip, entry, what) with what in
        "request" (ask again: broadcast while incomplete, unicast while probing) or "failed"
        (given up: the entry is gone; entry.pending holds the packets that waited)."""
        for key, entry in list(self._entries.items()):
            if entry.state == "reachable":
                if now - entry.updated < self.reachable_s:
                    continue
                entry.state, entry.tries, entry.next_try = "probe", 0, now
            if now < entry.next_try:
                continue
            if entry.tries >= self.retries:
                del self._entries[key]
                self.counters["arp_failed"] += 1
                self.counters["arp_timeout_dropped"] += len(entry.pending)
                self.n_pending -= len(entry.pending)
                yield key[0], key[1], entry, "failed"
                continue
            entry.tries += 1
            entry.next_try = now + RETRY_S
            yield key[0], key[1], entry, "request"

    def forget(self, vlan: int, ip: bytes) -> ArpEntry | None:
        entry = self._entries.pop((vlan, ip), None)
        if entry is not None:
            self.n_pending -= len(entry.pending)
        return entry

    def stats(self) -> dict:
        return {**self.counters, "arp_entries": len(self._entries), "arp_max_entries": self.max_entries,
                "arp_pending": self.n_pending, "arp_pending_max": self.pending_max}
