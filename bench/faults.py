"""Faults while running: how fast a port recovers, what abuse of the control socket costs, what a reload costs.

    sudo .venv/bin/python bench/faults.py [--datapaths c,python] [--json FILE]

On netns/demo.toml (demo-sw.toml), per datapath:
  - an afpacket port's interface deleted: time until `show ports` says missing, the switch's CPU share while it
    is missing; made again (`ip link add`, as `pyswitch netns up` does): time until the port is up again and
    until the first ping through it answers
  - a TAP port's device deleted: time until it is made again and a ping through it answers, the CPU share
    meanwhile (the detached fd reports POLLERR until the housekeeping tick notices)
  - `show stats` round trips, median and worst of 20, alone and beside 60 idle clients and 3 that dribble, and
    the pings lost meanwhile (200 at 10 ms)
On netns/lb.toml, per datapath: `pyswitch reload` adding a VIP, removing a backend and changing a route while a
long TCP connection through the VIP echoes a kilobyte every 20 ms: the reload's round trip and the slowest echo
with and without a reload.

A measurement, not a test: it asserts nothing.  Figures from a shared 2-core machine are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tcp import BENCH_ID, ROOT, start_switch, stop  # noqa: E402

from pyswitch.control import socket_path  # noqa: E402
from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from control_clients import idle_clients, slow_client  # noqa: E402

SERVER = ROOT / "tests" / "lb_server.py"
HOLDER = ROOT / "tests" / "reload_client.py"
H2, H3 = "198.51.100.12", "198.51.100.13"


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def port_state(name: str, port: str) -> dict:
    return next(r for r in request(name, {"cmd": "show", "what": "ports"}) if r["name"] == port)


def until(check, seconds: float = 10.0, step: float = 0.01) -> float:
    """Seconds until check() is true (or `seconds`, as a ceiling)."""
    start = time.monotonic()
    while not check() and time.monotonic() - start < seconds:
        time.sleep(step)
    return time.monotonic() - start


def pings(topo: Topology, host: str, address: str, count: int = 1, interval: float = 0.2) -> int:
    out = topo.exec(host, ["ping", "-c", str(count), "-i", str(interval), "-W", "1", address],
                    capture_output=True, text=True).stdout
    match = re.search(r"(\d+) received", out)
    return int(match.group(1)) if match else 0


def cpu_share(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def ports_faults(topo: Topology, name: str, pid: int) -> dict:
    end = next(link.peer for link in topo.links if link.host == "h2")
    pings(topo, "h1", H2, 2)
    t0 = time.monotonic()
    subprocess.run(["ip", "link", "del", end], check=True)
    detach_s = until(lambda: port_state(name, "p2")["state"] == "missing")
    missing_cpu = cpu_share(pid, 2.0)
    topo.up()
    t0 = time.monotonic()
    until(lambda: port_state(name, "p2")["state"] == "up")
    reattach_s = time.monotonic() - t0
    until(lambda: pings(topo, "h1", H2) == 1, step=0)
    first_ping_s = time.monotonic() - t0

    tap = f"psw-{BENCH_ID}tap3"                 # in h3's namespace
    pings(topo, "h1", H3, 2)
    t0 = time.monotonic()
    subprocess.run(["ip", "-n", topo.netns("h3"), "link", "del", tap], check=True)
    before = cpu_seconds(pid)
    until(lambda: port_state(name, "p3")["reattached"] >= 1)
    until(lambda: pings(topo, "h1", H3) == 1, step=0)
    tap_back_s = time.monotonic() - t0
    time.sleep(max(0.0, 2.0 - tap_back_s))
    tap_cpu = (cpu_seconds(pid) - before) / max(2.0, time.monotonic() - t0)
    return {"detach_s": detach_s, "missing_cpu": missing_cpu, "reattach_s": reattach_s,
            "first_ping_s": first_ping_s, "tap_back_s": tap_back_s, "tap_cpu_2s": tap_cpu}


def show_times(name: str, count: int = 20) -> list[float]:
    times = []
    for _ in range(count):
        t0 = time.monotonic()
        request(name, {"cmd": "show", "what": "stats"})
        times.append((time.monotonic() - t0) * 1000)
    return times


def control_abuse(topo: Topology, name: str) -> dict:
    quiet = show_times(name)
    path = socket_path(name)
    pinger = topo.popen("h1", ["ping", "-c", "200", "-i", "0.01", "-W", "1", H2], stdout=subprocess.PIPE, text=True)
    idle = idle_clients(path, 60)
    slow = [threading.Thread(target=slow_client, args=(path,)) for _ in range(3)]
    for t in slow:
        t.start()
    try:
        busy = show_times(name)
    finally:
        for sock in idle:
            sock.close()
    for t in slow:
        t.join()
    out = pinger.communicate(timeout=30)[0]
    received = int(re.search(r"(\d+) received", out).group(1))
    return {"show_ms_median": statistics.median(quiet), "show_ms_max": max(quiet),
            "abused_show_ms_median": statistics.median(busy), "abused_show_ms_max": max(busy),
            "pings_lost_of_200": 200 - received}


def reload_case(datapath: str, tmp: Path) -> dict:
    topo = Topology.load(ROOT / "netns/lb.toml", id=BENCH_ID)
    servers = []
    try:
        topo.up()
        for host in ("b1", "b2", "b3"):
            servers.append(topo.popen(host, [sys.executable, str(SERVER), host, "0.0.0.0", "8080"],
                                      stdout=subprocess.DEVNULL))
        text = (ROOT / "netns/lb-sw.toml").read_text().replace('type = "http"', 'type = "none"')
        head, _, tail = text.partition("[[vip]]")
        route = '[[route]]\nprefix = "198.18.0.0/24"\nvia = "{}"\n\n'
        template = tmp / "lb-faults.toml"
        template.write_text(head + route.format("192.0.2.12") + "[[vip]]" + tail)
        proc = start_switch(str(template), datapath, tmp)
        name = f"lb{BENCH_ID}"
        config = tmp / f"{name}-{datapath}-1.toml"
        try:
            topo.exec("c1", ["ping", "-c", "2", "-W", "2", "192.0.2.11"], capture_output=True)
            result = {}
            for label, change in (("without", False), ("with", True)):
                holder = topo.popen("c1", [sys.executable, str(HOLDER), "203.0.113.10", "80", "150", "0.02"],
                                    stdout=subprocess.PIPE, text=True)
                backend = holder.stdout.readline().split()[1]
                time.sleep(1.0)
                if change:
                    gone = next(b for b in ("192.0.2.11", "192.0.2.12", "192.0.2.13")
                                if not b.endswith(backend[1:]))
                    new = config.read_text()
                    new = new.replace(f'[[vip.backend]]\naddress = "{gone}"\nport = 8080\n\n', "")
                    new = new.replace('via = "192.0.2.12"', 'via = "192.0.2.13"')
                    new += ('[[vip]]\nname = "web2"\naddress = "203.0.113.20"\nport = 80\n\n'
                            '[[vip.backend]]\naddress = "192.0.2.11"\nport = 8080\n')
                    config.write_text(new)
                    t0 = time.monotonic()
                    answer = subprocess.run([sys.executable, "-m", "pyswitch", "reload", "--name", name],
                                            capture_output=True, text=True, cwd=ROOT)
                    result["reload_ms"] = (time.monotonic() - t0) * 1000
                    result["reload_changes"] = answer.stdout.strip()
                    took = re.search(r"\(([\d.]+) ms\)$", answer.stdout.strip())
                    result["reload_in_switch_ms"] = float(took.group(1))
                out = json.loads(holder.communicate(timeout=30)[0])
                result[f"max_echo_ms_{label}"] = out["max_rtt_ms"]
                result[f"echoed_{label}"] = f"{out['echoed']}/150" + (f" {out['error']}" if out["error"] else "")
            return result
        finally:
            stop(proc)
    finally:
        for s in servers:
            s.kill()
            s.wait()
        topo.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datapaths", default="c,python")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        for datapath in args.datapaths.split(","):
            topo = Topology.load(ROOT / "netns/demo.toml", id=BENCH_ID)
            try:
                topo.up()
                proc = start_switch("netns/demo-sw.toml", datapath, Path(tmp))
                try:
                    row = ports_faults(topo, f"demo{BENCH_ID}", proc.pid)
                    row.update(control_abuse(topo, f"demo{BENCH_ID}"))
                finally:
                    stop(proc)
            finally:
                topo.down()
            row.update(reload_case(datapath, Path(tmp)))
            results[datapath] = row

    keys = [k for k in next(iter(results.values())) if k != "reload_changes"]
    print(f"{'measure':<26}" + "".join(f"{d:>14}" for d in results))
    for key in keys:
        cells = []
        for row in results.values():
            value = row[key]
            cells.append(f"{value:>14.3f}" if isinstance(value, float) else f"{value!s:>14}")
        print(f"{key:<26}" + "".join(cells))
    for datapath, row in results.items():
        print(f"reload ({datapath}): {row.get('reload_changes')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
