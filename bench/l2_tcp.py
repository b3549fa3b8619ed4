"""TCP throughput and ping latency through L2: pyswitch (C and Python datapaths) beside the Linux bridge.

Builds netns/demo.toml with the project's own tooling, then for each forwarder runs iperf3 from h1 to h2
(hosts keep their default offloads) and a short ping, and prints a table with ratios to the bridge.

    sudo .venv/bin/python bench/l2_tcp.py [--seconds 5] [--json bench/results/l2_tcp.json]

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

BENCH_ID = "b0"
H2 = "198.51.100.12"


def start_switch(datapath: str, workdir: Path) -> subprocess.Popen:
    text = (ROOT / "netns/demo-sw.toml").read_text().replace("{id}", BENCH_ID)
    text = re.sub(r'(?m)^datapath *=.*$', f'datapath = "{datapath}"', text)
    config = workdir / f"sw-{datapath}.toml"
    config.write_text(text)
    log = open(workdir / f"sw-{datapath}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pyswitch", "run", str(config)], stdout=log, stderr=log,
                            cwd=ROOT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            request(f"demo{BENCH_ID}", {"cmd": "show", "what": "stats"}, timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the switch exited: {(workdir / f'sw-{datapath}.log').read_text()}")
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the switch did not answer")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Bridge:
    """The Linux bridge on the two root-namespace veth ends: the kernel's own L2 forwarder."""

    def __init__(self, ends):
        self.name = f"psw-{BENCH_ID}br"
        self.ends = ends

    def __enter__(self):
        subprocess.run(["ip", "link", "add", self.name, "type", "bridge"], check=True)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{self.name}.disable_ipv6=1"], check=True)
        for end in self.ends:
            subprocess.run(["ip", "link", "set", end, "master", self.name], check=True)
        subprocess.run(["ip", "link", "set", self.name, "up"], check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "link", "del", self.name], check=False)


def measure(topo: Topology, seconds: int) -> dict:
    server = topo.popen("h2", ["iperf3", "-s", "-1", "-B", H2], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = topo.exec("h1", ["iperf3", "-c", H2, "-t", str(seconds), "-J"], capture_output=True, text=True,
                        timeout=seconds + 30)
        result = json.loads(out.stdout)
        gbps = result["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        server.wait(timeout=10) if server.poll() is None else None
    ping = topo.exec("h1", ["ping", "-c", "20", "-i", "0.05", "-q", H2], capture_output=True, text=True)
    rtt = float(re.search(r"= [\d.]+/([\d.]+)/", ping.stdout).group(1))
    return {"tcp_gbps": round(gbps, 2), "ping_rtt_ms": rtt}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    topo = Topology.load(ROOT / "netns/demo.toml", id=BENCH_ID)
    results = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        try:
            topo.up()
            # Warm the hosts' ARP caches through a switch first, so every forwarder starts equal.
            with Bridge([f"psw-{BENCH_ID}sw-h1", f"psw-{BENCH_ID}sw-h2"]):
                results["linux bridge"] = measure(topo, args.seconds)
            for datapath in ("c", "python"):
                proc = start_switch(datapath, Path(tmp))
                try:
                    topo.exec("h1", ["ping", "-c", "2", "-W", "2", H2], capture_output=True)
                    results[f"pyswitch {datapath}"] = measure(topo, args.seconds)
                finally:
                    stop(proc)
        finally:
            topo.down()

    base = results["linux bridge"]
    print(f"{'forwarder':<16} {'TCP Gbit/s':>11} {'x bridge':>9} {'ping RTT ms':>12}")
    for name, r in results.items():
        ratio = r["tcp_gbps"] / base["tcp_gbps"] if base["tcp_gbps"] else 0
        print(f"{name:<16} {r['tcp_gbps']:>11.2f} {ratio:>9.2f} {r['ping_rtt_ms']:>12.3f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
