"""Load-balanced TCP through pyswitch: throughput of one connection and new connections per second, per mode.

    sudo .venv/bin/python bench/lb.py [--modes nat,fullnat,dsr] [--seconds 5] [--requests 500] [--json FILE]

netns/lb.toml with the VIP 203.0.113.10 of netns/lb-sw.toml in each mode, port 80 for HTTP and a second VIP
port 5201 for iperf3 (scheduler sh, so iperf3's control and data connections reach the same backend), on both
datapaths; the first row routes to a backend's own address
through the same switch (no VIP), as the baseline the ratios refer to.  Requests: sequential HTTP/1.0 GETs from
one curl (a new connection each) to a Python HTTP server per backend.

A benchmark, not a test: it asserts nothing and never fails a test run.
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
from tcp import BENCH_ID, ROOT, start_switch, stop  # noqa: E402

from pyswitch.topology import Topology  # noqa: E402

VIP = "203.0.113.10"
BACKEND = "192.0.2.11"
IPERF_PORT = 5201
SERVER = ROOT / "tests" / "lb_server.py"


def switch_template(mode: str, workdir: Path) -> str:
    text = (ROOT / "netns/lb-sw.toml").read_text()
    text = text.replace('mode = "nat"', f'mode = "{mode}"').replace('scheduler = "rr"', 'scheduler = "sh"')
    text = text.replace('type = "http"', 'type = "none"')
    if mode in ("dsr", "tunnel"):
        text = text.replace("port = 8080", "port = 80")
    text += (f'\n[[vip]]\nname = "perf"\naddress = "{VIP}"\nport = {IPERF_PORT}\nmode = "{mode}"\n'
             f'scheduler = "sh"\n')
    for address in ("192.0.2.11", "192.0.2.12", "192.0.2.13"):
        text += f'\n[[vip.backend]]\naddress = "{address}"\nport = {IPERF_PORT}\n'
    path = workdir / f"lb-sw-{mode}.toml"
    path.write_text(text)
    return str(path)


def measure(topo: Topology, target: str, port: int, seconds: int, requests: int) -> dict:
    iperf = [topo.popen(h, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL)
             for h in ("b1", "b2", "b3")]
    try:
        time.sleep(0.3)
        out = topo.exec("c1", ["iperf3", "-c", target, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"],
                        capture_output=True, text=True, timeout=seconds + 30)
        gbps = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        for p in iperf:
            p.kill()
            p.wait()
    urls = [f"http://{target}:{port}/"] * requests
    start = time.monotonic()
    out = topo.exec("c1", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}\\n", *urls],
                    capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    ok = out.stdout.split().count("200")
    return {"tcp_gbps": round(gbps, 2), "requests_per_s": round(ok / elapsed), "requests_ok": ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="nat,fullnat,dsr")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--datapaths", default="c,python")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    topo = Topology.load(ROOT / "netns/lb.toml", id=BENCH_ID)
    results = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        servers = []
        try:
            topo.up()
            for name in ("b1", "b2", "b3"):
                topo.exec(name, ["ip", "addr", "add", f"{VIP}/32", "dev", "lo"], check=True)
                for port in (80, 8080):
                    servers.append(topo.popen(name, [sys.executable, str(SERVER), name, "0.0.0.0", str(port)],
                                              stdout=subprocess.DEVNULL))
            cases = [("routed", "nat")] + [(m, m) for m in args.modes.split(",")]
            for datapath in args.datapaths.split(","):
                for label, mode in cases:
                    proc = start_switch(switch_template(mode, Path(tmp)), datapath, Path(tmp))
                    try:
                        target, port = (BACKEND, 8080) if label == "routed" else (VIP, 80)
                        topo.exec("c1", ["ping", "-c", "2", "-W", "2", BACKEND], capture_output=True)
                        results[f"{label} {datapath}"] = measure(topo, target, port, args.seconds, args.requests)
                    finally:
                        stop(proc)
        finally:
            for s in servers:
                s.kill()
                s.wait()
            topo.down()

    base = next(iter(results.values()))
    print(f"{'path':<14} {'TCP Gbit/s':>11} {'ratio':>7} {'requests/s':>11} {'ratio':>7}")
    for name, r in results.items():
        print(f"{name:<14} {r['tcp_gbps']:>11.2f} {r['tcp_gbps'] / base['tcp_gbps']:>7.2f} "
              f"{r['requests_per_s']:>11} {r['requests_per_s'] / base['requests_per_s']:>7.2f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "requests": args.requests, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
