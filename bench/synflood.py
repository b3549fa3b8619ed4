"""Good traffic through a VIP alone and during a SYN flood from random sources: what gets through.

    sudo .venv/bin/python bench/synflood.py [--rows maglev,rr,rr-other] [--flood-rates 5000,20000,0]
                                            [--seconds 5] [--connections 16] [--max-embryonic 16384]
                                            [--flood-threshold 1024] [--upcall-rate 1000]
                                            [--json bench/results/synflood.json]

netns/synflood.toml: wrk in c1 keeps --connections requests in flight, each on a new connection ("Connection:
close"), to nginx in b1, b2 and b3 behind a VIP (nat), first alone, then while f1 floods the VIP 203.0.113.10:80
with SYNs from random sources of 198.18.0.0/15 and random ports (tests/syn_flooder.py, a raw socket) at each of
--flood-rates SYNs a second (0: as fast as f1 can). The switch is started afresh for every measurement. Rows:

    maglev     wrk and the flood at 203.0.113.10, scheduled by the datapath from its ring: the flood's SYNs
               make connections there, at most --max-embryonic half-open ones, each new one taking the place of
               the oldest, and cost the slow path nothing
    rr         wrk and the flood at 203.0.113.10, round robin: every new connection's first packet comes up to
               the slow path; once --flood-threshold half-open connections are held, at most --upcall-rate a
               second do
    rr-other   the flood at 203.0.113.10 (rr), wrk at a second VIP 203.0.113.11 (rr) of the same switch: what a
               flood at one VIP leaves the others

The table gives good connections a second alone and during the flood, their fraction, wrk's errors, the flood's
SYNs a second as sent, and what the switch did: connections in its table at the end (its bound is MAX_CONNS), the
flooded VIP's embryonic connections, SYNs that took an older half-open one's place, SYNs refused (embryonic limit
or upcall rate), and the upcalls the slow path got. The switch runs pinned to core 1; wrk, the flooder and the
three nginx share core 0, so at the highest rates the flooder also takes CPU from wrk and nginx.

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
from tcp import BENCH_ID, ROOT, start_switch, stop, stop_on_term  # noqa: E402
from tcp_conns import ensure_tools, extra_vip_text, start_servers, web_switch_text, wrk  # noqa: E402

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

VIP, OTHER_VIP = "203.0.113.10", "203.0.113.11"
FLOODER = ROOT / "tests" / "syn_flooder.py"
MAX_CONNS = 100000


def switch_config(scheduler: str, args, workdir: Path) -> str:
    """netns/synflood-sw.toml with `scheduler`, the limits of the command line and a second VIP (OTHER_VIP, rr)."""
    text = web_switch_text("netns/synflood-sw.toml", scheduler)
    text = text.replace("max_embryonic = 16384", f"max_embryonic = {args.max_embryonic}")
    text = text.replace("flood_threshold = 1024", f"flood_threshold = {args.flood_threshold}")
    text = text.replace("upcall_rate = 1000", f"upcall_rate = {args.upcall_rate}")
    text = text.replace('datapath = "c"', f'datapath = "c"\nmax_conns = {MAX_CONNS}')
    text += extra_vip_text("other", OTHER_VIP, 80)
    path = workdir / f"synflood-{scheduler}.toml"
    path.write_text(text)
    return str(path)


def guard_of(name: str) -> dict:
    vip = request(name, {"cmd": "show", "what": "vips"})[0]
    return vip["guard"]


def measure(row: str, rate: float, topo: Topology, workdir: Path, args) -> dict:
    """Good connections a second at the row's target alone (rate None) or during a flood at `rate`."""
    scheduler = "maglev" if row == "maglev" else "rr"
    target = OTHER_VIP if row == "rr-other" else VIP
    proc = start_switch(switch_config(scheduler, args, workdir), "c", workdir)
    name = f"lb{BENCH_ID}"
    try:
        pin(proc.pid)
        wrk(topo, target, 1, args.connections)                          # warm up: ARP, flows
        if rate is None:
            return {"good": wrk(topo, target, args.seconds, args.connections)}
        stats0 = request(name, {"cmd": "show", "what": "stats"})
        flooder = topo.popen("f1", ["taskset", "-c", GENERATOR_CPU, sys.executable, str(FLOODER), VIP, "80",
                                    "--seconds", str(args.seconds + 2), "--count", str(10 ** 9),
                                    "--rate", str(rate)], stdout=subprocess.PIPE, text=True)
        assert flooder.stdout.readline().strip() == "ready"
        time.sleep(1)                                                   # the flood under way
        good = wrk(topo, target, args.seconds, args.connections)
        sent = json.loads(flooder.stdout.readline())
        flooder.wait(timeout=30)
        stats = request(name, {"cmd": "show", "what": "stats"})
        guard = guard_of(name)
    finally:
        stop(proc)
    return {"good": good, "flood_sent": sent["sent"], "flood_pps": round(sent["sent"] / max(sent["seconds"], 1e-9)),
            "conns": stats["conn_conns"], "max_conns": stats["conn_max_conns"],
            "embryonic": guard["embryonic"], "syn_evicted": guard["embryonic_evicted"],
            "refused": guard["embryonic_refused"] + guard["upcalls_limited"],
            "upcalls": stats["upcalls"] - stats0["upcalls"],
            "events_dropped": stats["conn_events_dropped"] - stats0["conn_events_dropped"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="maglev,rr,rr-other")
    parser.add_argument("--flood-rates", default="5000,20000,0", help="SYNs a second (0: as fast as f1 can)")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-embryonic", type=int, default=16384)
    parser.add_argument("--flood-threshold", type=int, default=1024)
    parser.add_argument("--upcall-rate", type=int, default=1000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    stop_on_term()
    rates = [float(r) for r in args.flood_rates.split(",")]

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
                results[row] = {"alone": measure(row, None, topo, workdir, args),
                                "floods": {str(rate): measure(row, rate, topo, workdir, args) for rate in rates}}
        finally:
            for server in servers:
                stop(server)
            topo.down()

    print(f"{'row':<9} {'flood':>6} {'alone c/s':>9} {'flood c/s':>9} {'fraction':>8} {'errors':>6} "
          f"{'SYN/s sent':>10} {'conns':>6} {'embryonic':>9} {'syn_evicted':>11} {'refused':>8} {'upcalls':>7}")
    for row, r in results.items():
        alone = r["alone"]["good"]["conns_per_s"]
        for rate, f in r["floods"].items():
            during = f["good"]["conns_per_s"]
            errors = f["good"]["errors"] + f["good"]["non_2xx"]
            offered = "max" if float(rate) == 0 else str(round(float(rate)))
            print(f"{row:<9} {offered:>6} {alone:>9} {during:>9} {during / max(alone, 1):>8.2f} {errors:>6} "
                  f"{f['flood_pps']:>10} {f['conns']:>6} {f['embryonic']:>9} {f['syn_evicted']:>11} "
                  f"{f['refused']:>8} {f['upcalls']:>7}")
    print(f"(table bound {MAX_CONNS}; max_embryonic {args.max_embryonic}, flood_threshold {args.flood_threshold}, "
          f"upcall_rate {args.upcall_rate}; {args.seconds:g} s each; a shared, loaded 2-core machine)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "connections": args.connections, "flood_rates": rates,
                       "max_embryonic": args.max_embryonic, "flood_threshold": args.flood_threshold,
                       "upcall_rate": args.upcall_rate, "max_conns": MAX_CONNS, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
