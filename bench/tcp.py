"""TCP throughput and ping latency through pyswitch (C and Python datapaths), switched or routed.

    sudo .venv/bin/python bench/tcp.py [--scenario l2|l3] [--seconds 5] [--port-type afpacket|afxdp]
                                       [--json bench/results/tcp-l2.json]

l2: netns/demo.toml, h1 -> h2 in one VLAN, beside the Linux bridge on the same two veth ends.
l3: netns/routed.toml, h1 (VLAN 10) -> h2 (VLAN 20) through the switch's VLAN interfaces.
Each forwarder runs iperf3 (hosts keep their default offloads) and a short ping; the table gives ratios to the
first row.  --port-type afxdp makes the switches' afpacket ports afxdp (the kernel then turns TSO off on the hosts'
veth ends, so they send MTU-sized frames; the Python datapath opens such ports as afpacket).

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

# Namespaces and links are psw-{BENCH_ID}...: PSW_BENCH_ID lets two benchmark runs (or a run and the test suite) coexist.
BENCH_ID = os.environ.get("PSW_BENCH_ID", "b0")
SCENARIOS = {
    # topology, switch configs (the first is the one measured), target address, ends a Linux bridge may join
    "l2": ("netns/demo.toml", ["netns/demo-sw.toml"], "198.51.100.12",
           [f"psw-{BENCH_ID}sw-h1", f"psw-{BENCH_ID}sw-h2"]),
    "l3": ("netns/routed.toml", ["netns/routed-sw.toml", "netns/routed-sw2.toml"], "192.0.2.11", None),
}


def start_switch(template: str, datapath: str, workdir: Path, workers: int = 1) -> subprocess.Popen:
    """Runs the switch of `template` with `datapath` (and `workers` datapath threads) until it answers."""
    text = (ROOT / template).read_text().replace("{id}", BENCH_ID)
    workers_line = f"\nworkers = {workers}" if workers != 1 else ""    # as written: any pyswitch reads it
    text = re.sub(r'(?m)^datapath *=.*$', f'datapath = "{datapath}"{workers_line}', text)
    name = re.search(r'(?m)^name *= *"([^"]+)"', text).group(1)
    config = workdir / f"{name}-{datapath}-{workers}.toml"
    config.write_text(text)
    log_path = workdir / f"{name}-{datapath}-{workers}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pyswitch", "run", str(config)], stdout=log, stderr=log,
                                cwd=ROOT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            request(name, {"cmd": "show", "what": "stats"}, timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the switch exited: {log_path.read_text()}")
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the switch did not answer")


def with_port_type(template: str, port_type: str, workdir: Path) -> str:
    """A copy of a switch config template whose afpacket ports are of `port_type`."""
    path = workdir / f"{Path(template).stem}-{port_type}.toml"
    path.write_text((ROOT / template).read_text().replace('type = "afpacket"', f'type = "{port_type}"'))
    return str(path)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_on_term() -> None:
    """A TERM stops the run through its cleanup (servers, switch, namespaces), in this process only: the
    helpers pyroute2 forks to open namespaces keep the default."""
    main_pid = os.getpid()

    def stop_run(signum, _frame):
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        sys.exit(1)
    signal.signal(signal.SIGTERM, stop_run)


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


def measure(topo: Topology, target: str, seconds: int) -> dict:
    server = topo.popen("h2", ["iperf3", "-s", "-1", "-B", target], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = topo.exec("h1", ["iperf3", "-c", target, "-t", str(seconds), "-J"], capture_output=True, text=True,
                        timeout=seconds + 30)
        result = json.loads(out.stdout)
        gbps = result["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        server.wait(timeout=10) if server.poll() is None else None
    ping = topo.exec("h1", ["ping", "-c", "20", "-i", "0.05", "-q", target], capture_output=True, text=True)
    rtt = float(re.search(r"= [\d.]+/([\d.]+)/", ping.stdout).group(1))
    return {"tcp_gbps": round(gbps, 2), "ping_rtt_ms": rtt}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="l2")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--datapaths", default="c,python")
    parser.add_argument("--port-type", choices=("afpacket", "afxdp"), default="afpacket")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    topology, switches, target, bridge_ends = SCENARIOS[args.scenario]
    topo = Topology.load(ROOT / topology, id=BENCH_ID)
    results = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        try:
            topo.up()
            if bridge_ends:
                with Bridge(bridge_ends):
                    results["linux bridge"] = measure(topo, target, args.seconds)
            if args.port_type != "afpacket":
                switches = [with_port_type(t, args.port_type, Path(tmp)) for t in switches]
            for datapath in args.datapaths.split(","):
                procs = [start_switch(t, datapath, Path(tmp)) for t in switches]
                try:
                    topo.exec("h1", ["ping", "-c", "2", "-W", "2", target], capture_output=True)
                    results[f"pyswitch {datapath}"] = measure(topo, target, args.seconds)
                finally:
                    for proc in procs:
                        stop(proc)
        finally:
            topo.down()

    base = next(iter(results.values()))
    print(f"{'forwarder':<16} {'TCP Gbit/s':>11} {'ratio':>9} {'ping RTT ms':>12}")
    for name, r in results.items():
        ratio = r["tcp_gbps"] / base["tcp_gbps"] if base["tcp_gbps"] else 0
        print(f"{name:<16} {r['tcp_gbps']:>11.2f} {ratio:>9.2f} {r['ping_rtt_ms']:>12.3f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"scenario": args.scenario, "seconds": args.seconds, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
