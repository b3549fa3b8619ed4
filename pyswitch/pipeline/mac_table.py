"""The MAC table (forwarding database): which port each (VLAN, MAC) was last seen on.

Bounded twice, so that a host flooding random source MACs on one port cannot push the other ports'
hosts out (a CAM overflow attack):

    per port  a port may hold at most its limit (`[[port]] max_macs`, or `[switch] max_macs_per_port`;
              none by default, as in Open vSwitch and the Linux bridge); a new MAC beyond it evicts that
              port's own least recently seen entry, counted for the port
    in total  `[switch] max_macs`; when the table is full, a new MAC evicts the least recently seen entry
              of the port that holds the most entries (Open vSwitch's fair eviction), so the port that
              floods pays for its own flood

Every eviction is counted, in total (`evicted`) and per port (`port_evicted`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class MacEntry:
    port_no: int
    last_seen: float        # seconds, on the switch's monotonic clock


class MacTable:
    def __init__(self, max_entries: int, aging_s: float, port_limits: dict[int, int] | None = None):
        self.max_entries = max_entries
        self.aging_s = aging_s
        self.port_limits = dict(port_limits or {})   # port_no -> most entries it may hold (absent: no limit)
        self._entries: dict[tuple[int, bytes], MacEntry] = {}
        # Each port's keys, least recently seen first: where an eviction takes from.
        self._by_port: dict[int, OrderedDict[tuple[int, bytes], None]] = {}
        self.learned = 0        # new entries
        self.moves = 0          # entries whose port changed
        self.evicted = 0        # entries dropped to make room (per-port limit or a full table)
        self.aged = 0           # entries forgotten after aging_s without a sighting
        self.port_evicted: dict[int, int] = {}   # port_no -> its entries evicted (either bound)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, vlan: int, mac: bytes) -> MacEntry | None:
        return self._entries.get((vlan, mac))

    def port_count(self, port_no: int) -> int:
        return len(self._by_port.get(port_no, ()))

    def learn(self, vlan: int, mac: bytes, port_no: int, now: float) -> int | None:
        """Record that `mac` in `vlan` was seen on `port_no`.

        Returns the previous port if the MAC moved, else None.  The caller must
        then remove the fast-path flows that still send to the old port.
        """
        key = (vlan, mac)
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_seen = now
            if entry.port_no == port_no:
                self._by_port[port_no].move_to_end(key)
                return None
            old = entry.port_no
            self._unlink(key, old)
            self._make_room(port_no, grows=False)
            entry.port_no = port_no
            self._link(key, port_no)
            self.moves += 1
            return old
        self._make_room(port_no)
        self._entries[key] = MacEntry(port_no, now)
        self._link(key, port_no)
        self.learned += 1
        return None

    def _make_room(self, port_no: int, grows: bool = True) -> None:
        """Evicts what one more entry on `port_no` needs: one of the port's own beyond its limit, else, if
        the table `grows` (a new MAC, not a move) and is full, the least recently seen entry of the port
        that holds the most."""
        limit = self.port_limits.get(port_no)
        if limit is not None and self.port_count(port_no) >= limit:
            self._evict_oldest(port_no)
        elif grows and len(self._entries) >= self.max_entries:
            # At most 64 ports: finding the biggest is cheap, and happens only while the table is full.
            self._evict_oldest(max(self._by_port, key=lambda p: len(self._by_port[p])))

    def _evict_oldest(self, port_no: int) -> None:
        key, _ = self._by_port[port_no].popitem(last=False)
        if not self._by_port[port_no]:
            del self._by_port[port_no]
        del self._entries[key]
        self.evicted += 1
        self.port_evicted[port_no] = self.port_evicted.get(port_no, 0) + 1

    def _link(self, key, port_no: int) -> None:
        self._by_port.setdefault(port_no, OrderedDict())[key] = None

    def _unlink(self, key, port_no: int) -> None:
        keys = self._by_port[port_no]
        del keys[key]
        if not keys:
            del self._by_port[port_no]

    def refresh(self, vlan: int, mac: bytes, seen: float) -> None:
        """A fast-path flow from this MAC was used at `seen`: it is still alive."""
        key = (vlan, mac)
        entry = self._entries.get(key)
        if entry is not None and seen > entry.last_seen:
            entry.last_seen = seen
            self._by_port[entry.port_no].move_to_end(key)

    def age(self, now: float) -> list[tuple[int, bytes]]:
        """Forget entries not seen for aging_s; returns their (vlan, mac)."""
        gone = [key for key, e in self._entries.items() if now - e.last_seen >= self.aging_s]
        for key in gone:
            self._unlink(key, self._entries.pop(key).port_no)
        self.aged += len(gone)
        return gone

    def forget_port(self, port_no: int) -> list[tuple[int, bytes]]:
        gone = list(self._by_port.pop(port_no, ()))
        for key in gone:
            del self._entries[key]
        return gone

    def entries(self):
        return list(self._entries.items())

    def port_stats(self, port_no: int) -> dict:
        """One port's share: what `show ports` gives per row."""
        limit = self.port_limits.get(port_no)
        return {"macs": self.port_count(port_no), "max_macs": limit if limit is not None else self.max_entries,
                "mac_evicted": self.port_evicted.get(port_no, 0)}

    def stats(self) -> dict:
        return {"macs": len(self._entries), "max_macs": self.max_entries, "mac_learned": self.learned,
                "mac_moves": self.moves, "mac_evicted": self.evicted, "mac_aged": self.aged}
