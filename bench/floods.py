"""Good traffic alone and during each flood: how much of it a MAC flood, an ARP storm and a stream of malformed
frames leave through pyswitch (docs/RELIABILITY.md "Floods and table bounds").

    sudo .venv/bin/python bench/floods.py [--seconds 3] [--floods mac,arp,malformed] [--rate PPS]
                                          [--json bench/results/floods.json] [--quick]

netns/floods.toml: a1 -> a2 is the good switched traffic (VLAN 10), a1 -> b the good routed one (VLAN 10 to 20);
host x floods with trafgen (tests/flood_traffic.py has each stream's frames) pinned to core 0, as fast as it can unless
--rate is given, while a1 measures, one after the other: an iperf3 TCP stream to a2, one to b, then 50 pings a
second to each.  The same measures without a flood come first; the table gives each one during a flood as a
fraction of it alone, beside what the flood offered (x's tx counter), what the switch took from it (its port's
rx_packets; the rest its RX ring dropped) and the counters of the bounds that refused.  The switch runs with its
default bounds ([switch] in netns/floods-sw.toml), so the figures are those a user would meet.

A benchmark, not a test: it asserts nothing.  The machine it runs on has 2 cores and is shared, so figures vary
from run to run; the fractions matter more than the rates.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from flood_traffic import A2, B, FLOODS, SWITCH, TOPOLOGY, Flood, ping_stats, tcp_gbits  # noqa: E402
from tcp import BENCH_ID, start_switch, stop  # noqa: E402

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

GENERATOR_CPU, SWITCH_CPU = "0", 1              # as bench/pps.py: the generator and the switch on a core each
# What `show stats` says about each flood's bounds: the counters whose growth the table shows.
COUNTERS = {"mac": ("mac_evicted", "evictions", "refused", "upcall_dropped"),
            "arp": ("arp_rate_limited", "arp_table_full", "arp_queue_dropped", "upcall_dropped"),
            "malformed": ("parse_errors_total", "upcall_dropped")}
GAUGES = ("macs", "flows", "arp_entries", "arp_pending")


def good_traffic(topo, seconds: float) -> dict:
    """Switched and routed TCP (Gbit/s), then the share of pings answered on both ways at once."""
    out = {"l2_tcp_gbps": tcp_gbits(topo, "a1", "a2", A2, seconds),
           "l3_tcp_gbps": tcp_gbits(topo, "a1", "b", B, seconds)}
    count = max(10, int(seconds * 50))
    pings = ping_stats(topo, [("a1", A2), ("a1", B)], count=count, interval=0.02)
    out["l2_ping_answered"], out["l2_ping_rtt_ms"] = pings[("a1", A2)]
    out["l3_ping_answered"], out["l3_ping_rtt_ms"] = pings[("a1", B)]
    return out


def x_port(name: str) -> dict:
    return next(row for row in request(name, {"cmd": "show", "what": "ports"}) if row["name"] == "x")


def run(args) -> dict:
    results = {}
    topo = Topology.load(str(ROOT / TOPOLOGY), id=BENCH_ID)
    name = f"fl{BENCH_ID}"
    with tempfile.TemporaryDirectory(prefix="psw-floods-") as tmp:
        workdir = Path(tmp)
        topo.up()
        proc = None
        try:
            proc = start_switch(SWITCH, "c", workdir)
            os.sched_setaffinity(proc.pid, {SWITCH_CPU})
            for host, address in (("a1", A2), ("a1", B), ("x", A2)):
                topo.exec(host, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "-q", address], capture_output=True)
            results["alone"] = good_traffic(topo, args.seconds)
            for kind in args.floods:
                # Long enough for all of good_traffic(): two TCP runs with their setup, then the pings.
                seconds = 3 * args.seconds + 4
                before, rx_before = request(name, {"cmd": "show", "what": "stats"}), x_port(name)
                with Flood(topo, kind, workdir, seconds, count=10**9, rate=args.rate, cpu=GENERATOR_CPU) as flood:
                    started = time.monotonic()
                    good = good_traffic(topo, args.seconds)
                after, rx_after = request(name, {"cmd": "show", "what": "stats"}), x_port(name)
                elapsed = max(time.monotonic() - started + 0.3, 1e-3)
                row = dict(good)
                row["flood_offered_pps"] = round(flood.sent / seconds)
                row["flood_taken_pps"] = round((rx_after["rx_packets"] - rx_before["rx_packets"]) / elapsed)
                row["refused"] = {key: after[key] - before[key] for key in COUNTERS[kind]}
                row["tables"] = {key: after[key] for key in GAUGES}
                results[kind] = row
                time.sleep(1)               # let the slow path drain what the flood left
        finally:
            if proc is not None:
                stop(proc)
            topo.down()
    return results


def print_table(results: dict) -> None:
    alone = results["alone"]
    print(f"\n{'':<10} {'flood offered':>13} {'switch took':>11}   {'L2 TCP Gbit/s':>18} {'L3 TCP Gbit/s':>18}"
          f"   {'L2 ping':>15} {'L3 ping':>15}   refused")
    for kind, row in results.items():
        def cell(key):
            value = row[key]
            return f"{value:6.2f}" if kind == "alone" else f"{value:6.2f} ({value / alone[key]:.2f})" \
                if alone[key] else f"{value:6.2f}"
        def ping(path):
            rtt = row[f"{path}_ping_rtt_ms"]
            return f"{row[f'{path}_ping_answered']:4.2f} {rtt:6.3f} ms" if rtt is not None else \
                f"{row[f'{path}_ping_answered']:4.2f}          "
        offered = "" if kind == "alone" else f"{row['flood_offered_pps']:,} pps"
        taken = "" if kind == "alone" else f"{row['flood_taken_pps']:,} pps"
        refused = "" if kind == "alone" else ", ".join(f"{k} +{v}" for k, v in row["refused"].items() if v)
        print(f"{kind:<10} {offered:>13} {taken:>11}   {cell('l2_tcp_gbps'):>18} {cell('l3_tcp_gbps'):>18}"
              f"   {ping('l2')} {ping('l3')}   {refused}")
    print("\n(fractions in parentheses: during the flood / alone; ping: the share answered, average RTT)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="each TCP measure's length")
    parser.add_argument("--floods", default=",".join(FLOODS), help="which floods, comma-separated")
    parser.add_argument("--rate", type=int, default=None, help="flood frames a second (default: trafgen's most)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quick", action="store_true", help="one second each (what the test runs)")
    args = parser.parse_args()
    args.floods = [kind for kind in args.floods.split(",") if kind]
    unknown = [kind for kind in args.floods if kind not in FLOODS]
    if unknown:
        parser.error(f"unknown flood {unknown[0]!r} (known: {', '.join(FLOODS)})")
    if args.quick:
        args.seconds = 1.0
    results = run(args)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "seconds": args.seconds,
                                               "rate": args.rate, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
