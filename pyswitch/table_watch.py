"""Tables that fill up, as events: one `table_full` when a table gets full, one `table_free` when it has room again.

A full table refuses or evicts on every new entry, so an event per refusal would be an event per packet of a
flood.  Instead the switch reads each table's fill and refusal counter once per housekeeping tick (0.5 s) and
the events are edge-triggered on that reading:

    full    entries >= bound, or the table refused or evicted an entry since the last tick
    free    (after full) entries < 90% of the bound and nothing refused or evicted in the tick: the margin keeps
            a table that hovers at its bound from flapping between the two

So each transition into "full" is one event, however many packets it refused; the counters (`show stats`)
still say how many.  A table that fills and drains within one tick without refusing anything is not seen.
"""
from __future__ import annotations

from dataclasses import dataclass

FREE_BELOW = 0.9            # a full table is free again below this share of its bound


@dataclass(frozen=True)
class Fill:
    entries: int
    bound: int
    refused: int            # entries refused or evicted to make room, ever (a counter that only grows)


def switch_tables(switch) -> dict[str, Fill]:
    """The switch's bounded tables as they are now: the fast path's flows (LRU evictions), the MAC table, each
    per-port MAC limit, the ARP table, and the connection table when there are VIPs."""
    s = switch.dp.stats()
    macs = switch.macs
    tables = {
        "flows": Fill(s["flows"], s["max_flows"], s["evictions"]),
        # Evictions under a port's own limit are that port's table, not the whole one's: occupancy only.
        "macs": Fill(len(macs), macs.max_entries, 0),
        "arp": Fill(len(switch.l3.arp), switch.l3.arp.max_entries, switch.l3.arp.counters["arp_table_full"]),
    }
    for port_no, limit in macs.port_limits.items():
        pc = switch.port_configs.get(port_no)
        if pc is not None:
            tables[f"macs:{pc.name}"] = Fill(macs.port_count(port_no), limit, 0)
    if switch.vips.enabled:
        c = switch.dp.conn_stats()
        tables["conns"] = Fill(c["conns"], c["max_conns"], c["evictions"] + c["refused"])
    return tables


class TableWatch:
    def __init__(self, events, read=None):
        self.events = events            # pyswitch/events.py EventLog
        self.read = read                # () -> {name: Fill}
        self._refused: dict[str, int] = {}      # table -> its refusal counter at the last tick
        self.full: set[str] = set()

    def check(self, tables: dict[str, Fill] | None = None) -> None:
        for name, fill in (self.read() if tables is None else tables).items():
            refusing = fill.refused > self._refused.get(name, fill.refused)   # the first reading is the base
            self._refused[name] = fill.refused
            if name not in self.full:
                if refusing or fill.entries >= fill.bound:
                    self.full.add(name)
                    self.events.emit("table_full", table=name, entries=fill.entries, max=fill.bound,
                                     refused=fill.refused)
            elif not refusing and fill.entries < fill.bound * FREE_BELOW:
                self.full.discard(name)
                self.events.emit("table_free", table=name, entries=fill.entries, max=fill.bound,
                                 refused=fill.refused)
