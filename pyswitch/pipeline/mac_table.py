"""The MAC table (forwarding database): which port each (VLAN, MAC) was last seen on.

Bounded: when full, the least recently seen entry makes room and is counted
in `evicted`, the way a hardware switch's CAM behaves under a MAC flood.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class MacEntry:
    port_no: int
    last_seen: float        # seconds, on the switch's monotonic clock


class MacTable:
    def __init__(self, max_entries: int, aging_s: float):
        self.max_entries = max_entries
        self.aging_s = aging_s
        self._entries: OrderedDict[tuple[int, bytes], MacEntry] = OrderedDict()
        self.learned = 0        # new entries
        self.moves = 0          # entries whose port changed
        self.evicted = 0        # entries dropped to make room
        self.aged = 0           # entries forgotten after aging_s without a sighting

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, vlan: int, mac: bytes) -> MacEntry | None:
        return self._entries.get((vlan, mac))

    def learn(self, vlan: int, mac: bytes, port_no: int, now: float) -> int | None:
        """Record that `mac` in `vlan` was seen on `port_no`.

        Returns the previous port if the MAC moved, else None.  The caller must
        then remove the fast-path flows that still send to the old port.
        """
        key = (vlan, mac)
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_seen = now
            self._entries.move_to_end(key)
            if entry.port_no != port_no:
                old, entry.port_no = entry.port_no, port_no
                self.moves += 1
                return old
            return None
        if len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
            self.evicted += 1
        self._entries[key] = MacEntry(port_no, now)
        self.learned += 1
        return None

    def refresh(self, vlan: int, mac: bytes, seen: float) -> None:
        """A fast-path flow from this MAC was used at `seen`: it is still alive."""
        entry = self._entries.get((vlan, mac))
        if entry is not None and seen > entry.last_seen:
            entry.last_seen = seen
            self._entries.move_to_end((vlan, mac))

    def age(self, now: float) -> list[tuple[int, bytes]]:
        """Forget entries not seen for aging_s; returns their (vlan, mac)."""
        gone = [key for key, e in self._entries.items() if now - e.last_seen >= self.aging_s]
        for key in gone:
            del self._entries[key]
        self.aged += len(gone)
        return gone

    def forget_port(self, port_no: int) -> list[tuple[int, bytes]]:
        gone = [key for key, e in self._entries.items() if e.port_no == port_no]
        for key in gone:
            del self._entries[key]
        return gone

    def entries(self):
        return list(self._entries.items())

    def stats(self) -> dict:
        return {"macs": len(self._entries), "max_macs": self.max_entries, "mac_learned": self.learned,
                "mac_moves": self.moves, "mac_evicted": self.evicted, "mac_aged": self.aged}
