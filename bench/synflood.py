"""Good traffic through a VIP alone and during a SYN flood from random sources: what gets through.

    sudo .venv/bin/python bench/synflood.py [--rows maglev,rr] [--seconds 5] [--connections 16]
                                            [--flood-rate 0] [--max-embryonic 16384] [--upcall-rate 1000]
                                            [--json bench/results/synflood.json]

netns/synflood.toml: wrk in c1 keeps --connections requests in flight, each on a new connection ("Connection:
close"), to nginx in b1, b2 and b3 behind the VIP 203.0.113.10:80 (nat), first alone, then while f1 floods the
VIP with SYNs from random sources of 198.18.0.0/15 and random ports (tests/syn_flooder.py, a raw socket, as fast
as it can or at --flood-rate). A row per scheduler:

    maglev   the datapath schedules new connections from its ring: the flood's SYNs make connections there,
             at most --max-embryonic half-open ones, each new one taking the oldest one's place
    rr       every new connection's first packet comes up to the slow path: at most --upcall-rate a second do

The table gives good connections a second alone and during the flood, their fraction, wrk's errors, the flood's
SYNs a second as sent, and what the switch did with them: connections in its table at the end (and its bound),
embryonic ones, SYNs that evicted an older half-open one, and SYNs refused (embryonic limit or upcall rate).
The switch runs pinned to core 1; wrk, the flooder and the three nginx on core 0.

A benchmark, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pps import GENERATOR_CPU, pin  # noqa: E402
from tcp import BENCH_ID, ROOT, start_switch, stop  # noqa: E402
from tcp_conns import ensure_tools, start_servers, wrk  # noqa: E402

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

VIP = "203.0.113.10"
FLOODER = ROOT / "tests" / "syn_flooder.py"
MAX_CONNS = 100000


def switch_config(scheduler: str, args, workdir: Path) -> str:
    text = (ROOT / "netns/synflood-sw.toml").read_text()
    text = text.replace('scheduler = "rr"', f'scheduler = "{scheduler}"')
    text = text.replace('type = "http"', 'type = "none"').replace("port = 8080", "port = 80")
    text = text.replace("max_embryonic = 16384", f"max_embryonic = {args.max_embryonic}")
    text = text.replace("upcall_rate = 1000", f"upcall_rate = {args.upcall_rate}")
    text = text.replace('datapath = "c"', f'datapath = "c"\nmax_conns = {MAX_CONNS}')
    path = workdir / f"synflood-{scheduler}.toml"
    path.write_text(text)
    return str(path)


def guard_of(name: str) -> dict:
    vip = request(name, {"cmd": "show", "what": "vips"})[0]
    return vip["guard"]


def measure_row(scheduler: str, topo: Topology, workdir: Path, args) -> dict:
    proc = start_switch(switch_config(scheduler, args, workdir), "c", workdir)
    name = f"lb{BENCH_ID}"
    try:
        pin(proc.pid)
        wrk(topo, VIP, 1, args.connections)                             # warm up: ARP, flows
        alone = wrk(topo, VIP, args.seconds, args.connections)
        stats0 = request(name, {"cmd": "show", "what": "stats"})
        flooder = topo.popen("f1", ["taskset", "-c", GENERATOR_CPU, sys.executable, str(FLOODER), VIP, "80",
                                    "--seconds", str(args.seconds + 2), "--count", str(10 ** 9),
                                    "--rate", str(args.flood_rate)], stdout=subprocess.PIPE, text=True)
        assert flooder.stdout.readline().strip() == "ready"
        time.sleep(1)                                                   # the flood under way
        during = wrk(topo, VIP, args.seconds, args.connections)
        sent = json.loads(flooder.stdout.readline())
        flooder.wait(timeout=30)
        stats = request(name, {"cmd": "show", "what": "stats"})
        guard = guard_of(name)
    finally:
        stop(proc)
    return {"alone": alone, "during": during, "flood_sent": sent["sent"],
            "flood_pps": round(sent["sent"] / max(sent["seconds"], 1e-9)),
            "conns": stats["conn_conns"], "max_conns": stats["conn_max_conns"],
            "embryonic": guard["embryonic"], "syn_evicted": guard["embryonic_evicted"],
            "refused": guard["embryonic_refused"] + guard["upcalls_limited"],
            "upcalls": stats["upcalls"] - stats0["upcalls"],
            "events_dropped": stats["conn_events_dropped"] - stats0["conn_events_dropped"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="maglev,rr")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--flood-rate", type=float, default=0, help="SYNs a second (0: as fast as f1 can)")
    parser.add_argument("--max-embryonic", type=int, default=16384)
    parser.add_argument("--upcall-rate", type=int, default=1000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    ensure_tools()
    topo = Topology.load(ROOT / "netns/synflood.toml", id=BENCH_ID)
    results = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        workdir = Path(tmp)
        servers = []
        try:
            topo.up()
            topo.exec("c1", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], check=True)
            servers = start_servers(topo, workdir)
            time.sleep(0.5)
            for row in args.rows.split(","):
                results[row] = measure_row(row, topo, workdir, args)
        finally:
            for server in servers:
                stop(server)
            topo.down()

    print(f"{'row':<8} {'alone c/s':>9} {'flood c/s':>9} {'fraction':>8} {'errors':>7} {'flood SYN/s':>11} "
          f"{'conns':>7} {'embryonic':>9} {'syn_evicted':>11} {'refused':>9} {'upcalls':>8}")
    for row, r in results.items():
        alone, during = r["alone"]["conns_per_s"], r["during"]["conns_per_s"]
        errors = r["during"]["errors"] + r["during"]["non_2xx"]
        print(f"{row:<8} {alone:>9} {during:>9} {during / max(alone, 1):>8.2f} {errors:>7} {r['flood_pps']:>11} "
              f"{r['conns']:>7} {r['embryonic']:>9} {r['syn_evicted']:>11} {r['refused']:>9} {r['upcalls']:>8}")
    print(f"(connection table bound {MAX_CONNS}; max_embryonic {args.max_embryonic}, upcall_rate "
          f"{args.upcall_rate}; a shared, loaded 2-core machine)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "connections": args.connections, "flood_rate": args.flood_rate,
                       "max_embryonic": args.max_embryonic, "upcall_rate": args.upcall_rate,
                       "max_conns": MAX_CONNS, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
