"""Small-packet forwarding rate: 64-byte UDP frames through every forwarder on the same veth pair, side by side.

    sudo .venv/bin/python bench/pps.py [--flows 1,256] [--seconds 5] [--runs 3] [--json bench/results/pps-l2.json]

netns/demo.toml: h1 sends, h2 receives, through the root-namespace ends psw-b0sw-h1 / psw-b0sw-h2.  trafgen
(Debian netsniff-ng, installed if missing) in h1, pinned to core 0, offers 60-byte frames (64 on the wire) to
h2's MAC as fast as it can, with FLOWS different UDP source ports.  The forwarder runs pinned to core 1:

    ceiling         bench/forwarder.c: TPACKET_V3 RX ring + sendmmsg, no parsing (the AF_PACKET I/O ceiling)
    pyswitch c      netns/demo-sw.toml with the C datapath
    pyswitch c afxdp  the same with its afpacket ports made afxdp (AF_XDP sockets, an XDP program on each end)
    pyswitch python the same with the Python datapath
    linux bridge    the kernel's bridge on the two ends (it runs in softirq, on the generator's core)

Offered and delivered rates come from interface counters (h1's eth0 tx, h2's eth0 rx) over the run; each
figure is the median of --runs runs.  Ratios are to the ceiling row.  After the runs, 20 pings h1 -> h2 at
light load give the RTT through each forwarder (batching must not cost latency when there is no load).

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tcp import BENCH_ID, ROOT, Bridge, start_switch, stop, with_port_type  # noqa: E402

from pyswitch.topology import Topology  # noqa: E402

ENDS = [f"psw-{BENCH_ID}sw-h1", f"psw-{BENCH_ID}sw-h2"]
GENERATOR_CPU, FORWARDER_CPU = "0", "1"
H1_MAC, H2_MAC = "02:00:00:00:00:11", "02:00:00:00:00:12"


def trafgen_config(flows: int) -> str:
    """One 60-byte IPv4/UDP frame h1 -> h2 whose UDP source port walks through `flows` values."""
    mac = lambda text: ", ".join(f"0x{b}" for b in text.split(":"))  # noqa: E731
    sport = "0x10, 0x00" if flows == 1 else f"0x10, dinc(0, {flows - 1})"
    return ("{\n"
            f"  {mac(H2_MAC)}, {mac(H1_MAC)}, 0x08, 0x00,\n"
            "  0x45, 0x00, const16(46), const16(0), const16(0), 0x40, 0x11, csumip(14, 33),\n"
            "  198, 51, 100, 11, 198, 51, 100, 12,\n"
            f"  {sport}, const16(9), const16(26), const16(0),\n"
            "  fill(0x00, 18)\n"
            "}\n")


def counter(topo: Topology, host: str, name: str) -> int:
    out = topo.exec(host, ["cat", f"/sys/class/net/eth0/statistics/{name}"], capture_output=True, text=True)
    return int(out.stdout)


def offer(topo: Topology, config: Path, seconds: float) -> tuple[float, float]:
    """(offered, delivered) packets per second over `seconds` of trafgen."""
    tx0, rx0 = counter(topo, "h1", "tx_packets"), counter(topo, "h2", "rx_packets")
    start = time.monotonic()
    topo.exec("h1", ["timeout", "-s", "INT", str(seconds), "taskset", "-c", GENERATOR_CPU, "trafgen", "--cpus",
                     "1", "--dev", "eth0", "--conf", str(config), "--no-sock-mem"],
              capture_output=True, timeout=seconds + 30)
    elapsed = time.monotonic() - start
    time.sleep(0.2)                     # let the last frames drain through the forwarder
    tx, rx = counter(topo, "h1", "tx_packets") - tx0, counter(topo, "h2", "rx_packets") - rx0
    return tx / elapsed, rx / elapsed


def ping_rtt_ms(topo: Topology) -> float:
    """The average RTT of 20 pings h1 -> h2 at light load: what batching costs when there is no batch."""
    topo.exec("h1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "-q", "198.51.100.12"], capture_output=True)  # ARP, flows
    out = topo.exec("h1", ["ping", "-c", "20", "-i", "0.01", "-w", "5", "-q", "198.51.100.12"], capture_output=True,
                    text=True)
    match = re.search(r"= [\d.]+/([\d.]+)/", out.stdout)
    return float(match.group(1)) if match else float("nan")


def pin(pid: int) -> None:
    """Pins a process and all its threads to the forwarder's core."""
    subprocess.run(["taskset", "-a", "-p", "-c", FORWARDER_CPU, str(pid)], check=True, capture_output=True)


def build_forwarder(workdir: Path) -> Path:
    binary = workdir / "forwarder"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(ROOT / "bench" / "forwarder.c")], check=True)
    return binary


def ensure_trafgen() -> None:
    if shutil.which("trafgen") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "netsniff-ng"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), capture_output=True)


def run_forwarder(name: str, topo: Topology, workdir: Path, forwarder: Path):
    """Starts `name` and returns a function that stops it (None for the bridge, which needs no process)."""
    if name == "ceiling":
        proc = subprocess.Popen([str(forwarder), *ENDS], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        pin(proc.pid)
        return lambda: stop(proc)
    if name.startswith("pyswitch"):
        template = "netns/demo-sw.toml"
        if name.endswith(" afxdp"):
            template = with_port_type(template, "afxdp", workdir)
        proc = start_switch(template, name.split()[1], workdir)
        pin(proc.pid)
        return lambda: stop(proc)
    bridge = Bridge(ENDS)
    bridge.__enter__()
    return lambda: bridge.__exit__(None, None, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", default="1,256")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--forwarders", default="ceiling,pyswitch c,pyswitch c afxdp,pyswitch python,linux bridge")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    ensure_trafgen()
    topo = Topology.load(ROOT / "netns/demo.toml", id=BENCH_ID)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        workdir = Path(tmp)
        forwarder = build_forwarder(workdir)
        try:
            topo.up()
            # Static neighbours: no ARP may be in flight while the generator runs.
            topo.exec("h1", ["ip", "neigh", "replace", "198.51.100.12", "lladdr", H2_MAC, "dev", "eth0"], check=True)
            for flows in (int(f) for f in args.flows.split(",")):
                config = workdir / f"udp-{flows}.trafgen"
                config.write_text(trafgen_config(flows))
                for name in args.forwarders.split(","):
                    stop_forwarder = run_forwarder(name, topo, workdir, forwarder)
                    try:
                        offer(topo, config, 1.0)        # warm up: learning, flows, caches
                        runs = [offer(topo, config, args.seconds) for _ in range(args.runs)]
                        rtt = ping_rtt_ms(topo)
                    finally:
                        stop_forwarder()
                    results[f"{name}, {flows} flows"] = {
                        "flows": flows, "forwarder": name,
                        "offered_pps": round(statistics.median(r[0] for r in runs)),
                        "delivered_pps": round(statistics.median(r[1] for r in runs)), "ping_rtt_ms": rtt}
        finally:
            topo.down()

    print(f"{'forwarder, flows':<32} {'offered pps':>12} {'delivered pps':>14} {'vs ceiling':>11} {'ping ms':>8}")
    for key, r in results.items():
        ceiling = results.get(f"ceiling, {r['flows']} flows", r)["delivered_pps"] or 1
        print(f"{key:<32} {r['offered_pps']:>12} {r['delivered_pps']:>14} {r['delivered_pps'] / ceiling:>11.2f} "
              f"{r['ping_rtt_ms']:>8.3f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "runs": args.runs, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
