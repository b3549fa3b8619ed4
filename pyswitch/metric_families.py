"""A switch's snapshot (what `show stats`, `show ports`, `show vips` and `show ha` answer) as Prometheus metric
families: the translation only, no I/O and no threads, so the unit tests feed it a snapshot and read it back.

Names follow Prometheus's conventions: `pyswitch_` first, the unit in the name (`_bytes`, `_seconds`), `_total`
on every counter, and what varies (port, VIP, backend, reason) in labels rather than in names.  The `show stats`
keys with a name of their own are in RENAMED, among them every number there that can go down (a gauge); every
other number there is a counter and exported as `pyswitch_<key>_total`: a counter a later change adds to `show
stats` is on the endpoint at once, without a second list to keep in step (a new gauge must go into RENAMED).
"""
from __future__ import annotations

import re

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .ha.machine import BACKUP, FAULT, INIT, MASTER
from .lb.backend import STATES as BACKEND_STATES

# `show stats` key -> (metric name, "counter" | "gauge", help).  Counter names are given without `_total`
# (CounterMetricFamily adds it).
RENAMED = {
    "flows": ("pyswitch_flows", "gauge", "Fast-path flows installed."),
    "max_flows": ("pyswitch_flows_max", "gauge", "The flow table's bound ([switch] max_flows)."),
    "subtables": ("pyswitch_flow_subtables", "gauge", "Masked subtables of the flow table."),
    "inserts": ("pyswitch_flow_inserts", "counter", "Flows installed."),
    "modifies": ("pyswitch_flow_modifies", "counter", "Flows whose actions were replaced."),
    "deletes": ("pyswitch_flow_deletes", "counter", "Flows removed by the slow path."),
    "expired": ("pyswitch_flow_expired", "counter", "Flows removed for being idle."),
    "evictions": ("pyswitch_flow_evictions", "counter", "Flows evicted from a full table (least recently used)."),
    "refused": ("pyswitch_flow_refused", "counter", "Flows the table refused."),
    "rx_packets": ("pyswitch_datapath_rx_packets", "counter", "Frames the datapath received, all ports."),
    "tx_packets": ("pyswitch_datapath_tx_packets", "counter", "Frames the datapath sent, all ports."),
    "upcalls": ("pyswitch_datapath_upcalls", "counter", "Frames the datapath queued for the slow path."),
    "upcall_dropped": ("pyswitch_datapath_upcalls_dropped", "counter",
                       "Upcalls dropped because the upcall queue (or a port's share of it) was full."),
    "bad_port": ("pyswitch_datapath_bad_port", "counter", "Outputs to a port the datapath does not have."),
    "routed": ("pyswitch_datapath_routed_packets", "counter", "Packets the ROUTE action forwarded."),
    "route_dropped": ("pyswitch_datapath_route_dropped", "counter", "Packets the ROUTE action dropped."),
    "martian": ("pyswitch_datapath_martian", "counter", "Packets dropped for a martian source address."),
    "decap_errors": ("pyswitch_datapath_decap_errors", "counter", "Tunnel packets that could not be decapsulated."),
    "slow_path_holds": ("pyswitch_slow_path_holds", "counter",
                        "Slow-path turns after which the datapath was made to forward on (overload)."),
    "upcalls_shed": ("pyswitch_upcalls_shed", "counter", "Table misses left unhandled when a turn's budget ran out."),
    "workers": ("pyswitch_workers", "gauge", "Datapath threads."),
    "captures": ("pyswitch_captures", "gauge", "Captures running (pyswitch capture)."),
    "macs": ("pyswitch_mac_entries", "gauge", "Entries in the MAC table."),
    "max_macs": ("pyswitch_mac_entries_max", "gauge", "The MAC table's bound ([switch] max_macs)."),
    "arp_entries": ("pyswitch_arp_entries", "gauge", "Entries in the ARP table."),
    "arp_max_entries": ("pyswitch_arp_entries_max", "gauge", "The ARP table's bound."),
    "arp_pending": ("pyswitch_arp_pending_packets", "gauge", "Packets waiting for an ARP answer."),
    "arp_pending_max": ("pyswitch_arp_pending_packets_max", "gauge", "Packets that may wait for ARP at most."),
    "arp_rate_per_port": ("pyswitch_arp_rate_per_port", "gauge", "ARP packets a second a port may bring up."),
    "max_neighbors": ("pyswitch_neighbors_max", "gauge", "The datapath's neighbor table bound."),
    "conn_conns": ("pyswitch_conns", "gauge", "Load-balanced connections in the connection table."),
    "conn_max_conns": ("pyswitch_conns_max", "gauge", "The connection table's bound ([switch] max_conns)."),
    "conn_bytes_used": ("pyswitch_conn_table_bytes", "gauge", "Memory the connection table holds."),
    "conn_bytes_per_conn": ("pyswitch_conn_table_bytes_per_conn", "gauge", "Memory one connection takes."),
    "conn_splices": ("pyswitch_conn_splices", "gauge", "Spliced (L7) connections in the table."),
    "conn_max_splices": ("pyswitch_conn_splices_max", "gauge", "The splice table's bound."),
    "ring_rings": ("pyswitch_maglev_rings", "gauge", "Maglev rings in the datapath."),
    "ring_bytes_used": ("pyswitch_maglev_ring_bytes", "gauge", "Memory the Maglev rings hold."),
    "lb_snat_ports_in_use": ("pyswitch_snat_ports_in_use", "gauge", "Full-NAT source ports allocated."),
    "l7_sessions": ("pyswitch_l7_sessions", "gauge", "L7 sessions reading a request or opening a backend."),
    "l7_spliced_open": ("pyswitch_l7_spliced_conns", "gauge", "L7 connections spliced and open."),
    "uptime_s": ("pyswitch_uptime_seconds", "gauge", "Seconds since the switch started."),
}
# Keys exported in another form (the guard_* sums: per VIP), or not numbers worth a series.
SKIPPED = {"name", "datapath", "pid", "parse_errors_total", "mac_evicted_by_port", "guard_embryonic",
           "guard_embryonic_evicted", "guard_embryonic_refused", "guard_upcalls_limited"}
# `show stats` keys holding one number per something: (metric name, label, "counter" | "gauge", help).
LABELLED = {
    "parse_errors": ("pyswitch_parse_errors", "reason", "counter", "Frames dropped as malformed, by reason."),
    "upcalls_by_reason": ("pyswitch_upcalls", "reason", "counter",
                          "Upcalls the slow path handled, by reason (the shed ones: pyswitch_upcalls_shed_total)."),
    "conn_by_state": ("pyswitch_conns_by_state", "state", "gauge", "Connections in the table, by state."),
}
LOOKUPS = {"emc_hits": "emc_hit", "masked_hits": "masked_hit", "misses": "miss"}   # one family, by result
PORT_COUNTERS = {
    "rx_packets": "Frames received on the port.", "tx_packets": "Frames sent on the port.",
    "rx_bytes": "Bytes received on the port.", "tx_bytes": "Bytes sent on the port.",
    "rx_dropped": "Frames the port lost on the way in (ring or queue full).",
    "rx_errors": "Receive errors on the port.", "tx_dropped": "Frames the port could not send.",
    "mac_evicted": "MAC entries of the port evicted (its limit, or a full table).",
    "reattached": "Times the port's interface came back and the port was attached again.",
}
HA_STATES = (INIT, BACKUP, MASTER, FAULT)
_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")


def families(snapshot: dict) -> list:
    """Every metric family of one snapshot: {"stats": ..., "ports": [...], "vips": [...], "ha": ... or None}."""
    out = [_info(snapshot["stats"])]
    out += _stats(snapshot["stats"])
    out += _ports(snapshot["ports"])
    out += _vips(snapshot["vips"])
    if snapshot.get("ha") is not None:
        out += _ha(snapshot["ha"])
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _family(name: str, kind: str, help: str, labels=()):
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(name, help, labels=list(labels))


def _info(stats: dict):
    info = GaugeMetricFamily("pyswitch_info", "The switch's name and datapath (always 1).",
                             labels=["name", "datapath"])
    info.add_metric([str(stats.get("name", "")), str(stats.get("datapath", ""))], 1)
    return info


def _stats(stats: dict) -> list:
    out = []
    lookups = CounterMetricFamily("pyswitch_flow_lookups", "Flow table lookups, by result.", labels=["result"])
    for key, value in stats.items():
        if key in SKIPPED:
            continue
        if key in LOOKUPS and _number(value):
            lookups.add_metric([LOOKUPS[key]], value)
        elif key in LABELLED and isinstance(value, dict):
            name, label, kind, help = LABELLED[key]
            family = _family(name, kind, help, [label])
            for item, n in value.items():
                if _number(n):
                    family.add_metric([str(item)], n)
            out.append(family)
        elif key.startswith("worker_") and isinstance(value, list):
            family = _family(f"pyswitch_{key}", "counter", f"Per datapath worker: {key[7:]}.", ["worker"])
            for worker, n in enumerate(value):
                family.add_metric([str(worker)], n)
            out.append(family)
        elif _number(value):
            name, kind, help = RENAMED.get(key) or _generic(key)
            family = _family(name, kind, help)
            family.add_metric([], value)
            out.append(family)
    out.append(lookups)
    return out


def _generic(key: str) -> tuple[str, str, str]:
    return "pyswitch_" + _NAME_RE.sub("_", key), "counter", f"show stats: {key}."


def _ports(rows: list[dict]) -> list:
    counters = {key: CounterMetricFamily(f"pyswitch_port_{key}", help, labels=["port"])
                for key, help in PORT_COUNTERS.items()}
    macs = GaugeMetricFamily("pyswitch_port_mac_entries", "MAC entries learned on the port.", labels=["port"])
    macs_max = GaugeMetricFamily("pyswitch_port_mac_entries_max", "MAC entries the port may hold.", labels=["port"])
    up = GaugeMetricFamily("pyswitch_port_up", "1 while the port's interface is there and running, else 0.",
                           labels=["port"])
    info = GaugeMetricFamily("pyswitch_port_info", "A port's kind and device (always 1).",
                             labels=["port", "type", "device"])
    for row in rows:
        port = row["name"]
        for key, family in counters.items():
            if _number(row.get(key)):
                family.add_metric([port], row[key])
        if _number(row.get("macs")):
            macs.add_metric([port], row["macs"])
        if _number(row.get("max_macs")):
            macs_max.add_metric([port], row["max_macs"])
        up.add_metric([port], 1 if row.get("state", "up") == "up" else 0)
        info.add_metric([port, str(row.get("type", "")), str(row.get("device", ""))], 1)
    return [*counters.values(), macs, macs_max, up, info]


def _vips(rows: list[dict]) -> list:
    vip_counters: dict[str, CounterMetricFamily] = {}
    embryonic = GaugeMetricFamily("pyswitch_vip_embryonic_conns", "Half-open connections of the VIP.",
                                  labels=["vip"])
    info = GaugeMetricFamily("pyswitch_vip_info", "A VIP's address and how it balances (always 1).",
                             labels=["vip", "address", "port", "protocol", "mode", "scheduler"])
    labels = ["vip", "backend"]
    up = GaugeMetricFamily("pyswitch_backend_up", "1 while the backend takes new connections' share (state up).",
                           labels=labels)
    state = GaugeMetricFamily("pyswitch_backend_state", "The backend's state: 1 for the one it is in.",
                              labels=[*labels, "state"])
    weight = GaugeMetricFamily("pyswitch_backend_weight", "The backend's weight (0 drains).", labels=labels)
    active = GaugeMetricFamily("pyswitch_backend_active_conns", "Connections open to the backend, not closing.",
                               labels=labels)
    total = CounterMetricFamily("pyswitch_backend_connections", "Connections ever given to the backend.",
                                labels=labels)
    rtt = GaugeMetricFamily("pyswitch_backend_rtt_seconds", "The backend's smoothed response time, once measured.",
                            labels=labels)
    rule_hits = CounterMetricFamily("pyswitch_l7_rule_hits", "Requests an L7 rule sent to its pool.",
                                    labels=["vip", "rule", "pool"])

    def count(name: str, vip: str, value, help: str) -> None:
        family = vip_counters.get(name)
        if family is None:
            family = vip_counters[name] = CounterMetricFamily(name, help, labels=["vip"])
        family.add_metric([vip], value)

    for row in rows:
        vip = row["name"]
        info.add_metric([vip, str(row.get("address", "")), str(row.get("port", "")), str(row.get("protocol", "")),
                         str(row.get("mode", "")), str(row.get("scheduler", ""))], 1)
        for key, value in row.get("counters", {}).items():
            if _number(value):
                count(f"pyswitch_vip_{_NAME_RE.sub('_', key)}", vip, value, f"show vips: counters.{key}.")
        guard = row.get("guard") or {}
        for key, value in guard.items():
            if key == "embryonic" and _number(value):
                embryonic.add_metric([vip], value)
            elif _number(value):
                count(f"pyswitch_vip_{_NAME_RE.sub('_', key)}", vip, value, f"show vips: guard.{key}.")
        for b in row.get("backends", []):
            backend = f"{b['address']}:{b['port']}"
            up.add_metric([vip, backend], 1 if b.get("state") == "up" else 0)
            for s in BACKEND_STATES:
                state.add_metric([vip, backend, s], 1 if b.get("state") == s else 0)
            weight.add_metric([vip, backend], b.get("weight", 0))
            active.add_metric([vip, backend], b.get("active_conns", 0))
            total.add_metric([vip, backend], b.get("total_conns", 0))
            if _number(b.get("rtt_ms")):
                rtt.add_metric([vip, backend], b["rtt_ms"] / 1000.0)
        l7 = row.get("l7")
        if l7:
            for rule in l7.get("rules", []):
                rule_hits.add_metric([vip, str(rule["name"]), str(rule["pool"])], rule.get("hits", 0))
            for key, value in l7.items():
                if key not in ("window_scale",) and _number(value):
                    count(f"pyswitch_l7_vip_{_NAME_RE.sub('_', key)}", vip, value, f"show vips: l7.{key}.")
    return [info, *vip_counters.values(), embryonic, up, state, weight, active, total, rtt, rule_hits]


def _ha(ha: dict) -> list:
    state = GaugeMetricFamily("pyswitch_ha_state", "The VRRP instance's state: 1 for the one it is in.",
                              labels=["state"])
    for s in HA_STATES:
        state.add_metric([s], 1 if ha.get("state") == s else 0)
    master = GaugeMetricFamily("pyswitch_ha_master", "1 while this instance is the pair's master, else 0.")
    master.add_metric([], 1 if ha.get("state") == MASTER else 0)
    priority = GaugeMetricFamily("pyswitch_ha_priority", "The VRRP priority.")
    priority.add_metric([], ha.get("priority", 0))
    return [state, master, priority]
