"""New TCP connections per second through a VIP: short HTTP connections from a real client to real servers.

    sudo .venv/bin/python bench/tcp_conns.py [--rows NAME,...] [--seconds 5] [--connections 64] [--workers 1]
                                             [--json bench/results/tcp-conns.json]

netns/lb.toml: wrk (Debian, installed if missing) in c1 keeps --connections requests in flight, each on a new
connection ("Connection: close": nginx answers and closes, wrk connects again), to nginx (Debian nginx-light) in
b1, b2 and b3.  Every connection is a handshake, one request and one answer, and the close: about ten packets
through the forwarder.  The switch runs pinned to core 1; wrk and the three nginx run on core 0.  Rows:

    routed              c1 -> b1's own address through pyswitch C (no VIP): what routing alone allows
    nat rr              the VIP 203.0.113.10:80 in nat mode, round robin: every connection's first packet comes
                        up to the slow path, which schedules it and adds the connection
    nat maglev          the same with maglev: the datapath schedules from its ring, nothing comes up
    dsr rr, fullnat rr  the other modes with the slow path
    nftables dnat       the Linux reference: the switch's ends in a router namespace, DNAT round robin

With --workers N the switch runs N datapath workers, pinned as bench/pps.py pins them (worker K on core
(1 + K) mod the cores: on 2 cores worker 1 shares core 0 with wrk and nginx).

Besides connections per second, the table gives the switch's CPU time per connection (user + system, from
/proc/PID/stat) and the upcalls per connection, which tell what the slow path costs.

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pps import BACKENDS, GENERATOR_CPU, FORWARDER_CPU, LinuxRouter, SCENARIOS, pin, pin_workers  # noqa: E402
from tcp import BENCH_ID, ROOT, start_switch, stop  # noqa: E402

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

VIP = "203.0.113.10"
ROWS = ["routed", "nat rr", "nat maglev", "dsr rr", "fullnat rr", "nftables dnat"]
NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir}; uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    server {{ listen 80 reuseport backlog=4096; location / {{ return 200 "ok\\n"; }} }}
}}
"""


def ensure_tools() -> None:
    missing = [package for tool, package in (("wrk", "wrk"), ("nginx", "nginx-light"), ("nft", "nftables"))
               if shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), capture_output=True)


def web_switch_text(template: str, scheduler: str) -> str:
    """A load balancer's switch file from netns/ with its VIP's `scheduler`, backends on nginx's port 80 and no
    health checks (the benchmarks' servers answer no health probe)."""
    text = (ROOT / template).read_text().replace('scheduler = "rr"', f'scheduler = "{scheduler}"')
    return text.replace('type = "http"', 'type = "none"').replace("port = 8080", "port = 80")


def extra_vip_text(name: str, address: str, port: int, protocol: str = "tcp") -> str:
    """One more rr [[vip]] on the three backends of netns/lb.toml, at `port` on each."""
    protocol_line = "" if protocol == "tcp" else f'protocol = "{protocol}"\n'     # tcp is the default
    text = f'\n[[vip]]\nname = "{name}"\naddress = "{address}"\nport = {port}\n{protocol_line}scheduler = "rr"\n'
    for backend in ("192.0.2.11", "192.0.2.12", "192.0.2.13"):
        text += f'\n[[vip.backend]]\naddress = "{backend}"\nport = {port}\n'
    return text


def switch_config(mode: str, scheduler: str, workdir: Path) -> str:
    text = web_switch_text("netns/lb-sw.toml", scheduler).replace('mode = "nat"', f'mode = "{mode}"')
    path = workdir / f"tcp-conns-{mode}-{scheduler}.toml"
    path.write_text(text)
    return str(path)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_servers(topo: Topology, workdir: Path) -> list[subprocess.Popen]:
    servers = []
    for host in ("b1", "b2", "b3"):
        home = workdir / f"nginx-{host}"
        home.mkdir(exist_ok=True)
        (home / "nginx.conf").write_text(NGINX_CONF.format(dir=home))
        servers.append(topo.popen(host, ["taskset", "-c", GENERATOR_CPU, "nginx", "-p", str(home), "-c",
                                         str(home / "nginx.conf")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    return servers


def wrk(topo: Topology, target: str, seconds: float, connections: int) -> dict:
    out = topo.exec("c1", ["taskset", "-c", GENERATOR_CPU, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                           "-H", "Connection: close", f"http://{target}/"], capture_output=True, text=True,
                    timeout=seconds + 30)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    requests = re.search(r"(\d+) requests in", out.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    return {"conns_per_s": round(float(rate.group(1))) if rate else 0,
            "requests": int(requests.group(1)) if requests else 0,
            "errors": sum(map(int, errors.groups())) if errors else 0,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def measure_row(row: str, topo: Topology, workdir: Path, args) -> dict:
    if row == "nftables dnat":
        with LinuxRouter(SCENARIOS["l4-nat"].router, VIP, BACKENDS, ("tcp", 80)):
            wrk(topo, VIP, 1, args.connections)                         # warm up: ARP, conntrack
            return wrk(topo, VIP, args.seconds, args.connections)
    mode, scheduler = ("nat", "rr") if row == "routed" else row.split()
    proc = start_switch(switch_config(mode, scheduler, workdir), "c", workdir, args.workers)
    try:
        pin(proc.pid)
        if args.workers > 1:
            pin_workers(proc.pid, args.workers)
        name = f"lb{BENCH_ID}"
        for host in ("b1", "b2", "b3"):           # dsr: the backends answer from the VIP, held on lo
            topo.exec(host, ["ip", "addr", "replace", f"{VIP}/32", "dev", "lo"], check=mode == "dsr",
                      capture_output=True)
        target = BACKENDS[0] if row == "routed" else VIP
        wrk(topo, target, 1, args.connections)                           # warm up: ARP, flows
        cpu0, upcalls0 = cpu_seconds(proc.pid), request(name, {"cmd": "show", "what": "stats"})["upcalls"]
        result = wrk(topo, target, args.seconds, args.connections)
        cpu = cpu_seconds(proc.pid) - cpu0
        upcalls = request(name, {"cmd": "show", "what": "stats"})["upcalls"] - upcalls0
    finally:
        stop(proc)
        for host in ("b1", "b2", "b3"):
            topo.exec(host, ["ip", "addr", "del", f"{VIP}/32", "dev", "lo"], capture_output=True)
    conns = max(1, result["requests"])
    return dict(result, switch_cpu_us_per_conn=round(cpu / conns * 1e6, 1),
                upcalls_per_conn=round(upcalls / conns, 2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="the switch's datapath workers")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    ensure_tools()
    topo = Topology.load(ROOT / "netns/lb.toml", id=BENCH_ID)
    results = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        workdir = Path(tmp)
        servers = []
        try:
            topo.up()
            # Ports enough for every connection of a run, and no SYN cookies to muddy the handshake count.
            topo.exec("c1", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], check=True)
            servers = start_servers(topo, workdir)
            time.sleep(0.5)
            for row in args.rows.split(","):
                results[row] = measure_row(row, topo, workdir, args)
        finally:
            for server in servers:
                stop(server)
            topo.down()

    base = results.get("routed", next(iter(results.values())))["conns_per_s"] or 1
    print(f"{'row':<16} {'conns/s':>9} {'vs routed':>10} {'errors':>7} {'switch us/conn':>15} {'upcalls/conn':>13}")
    for row, r in results.items():
        cpu = r.get("switch_cpu_us_per_conn", "-")
        ups = r.get("upcalls_per_conn", "-")
        print(f"{row:<16} {r['conns_per_s']:>9} {r['conns_per_s'] / base:>10.2f} {r['errors'] + r['non_2xx']:>7} "
              f"{cpu:>15} {ups:>13}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "connections": args.connections, "workers": args.workers,
                       "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
