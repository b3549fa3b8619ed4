"""A memory soak: connections churning through VIPs for minutes, the switch's memory and table sampled as they go.

    sudo .venv/bin/python bench/soak.py [--minutes 10] [--interval 60] [--connections 16] [--udp-rate 300]
                                        [--scheduler rr] [--json bench/results/soak.json]

netns/lb.toml, the switch of netns/lb-sw.toml (C datapath, health checks off) with two VIPs: 203.0.113.10:80/tcp
(--scheduler, nat) in front of nginx in b1, b2 and b3, and 203.0.113.10:53/udp (rr, nat) in front of UDP echo
servers (tests/lb_server.py --udp). For the whole run, c1 keeps wrk's --connections requests in flight, each on a
new connection ("Connection: close"), and sends --udp-rate datagrams a second, each from a new socket (a new UDP
connection for the switch), each answer awaited. UDP connections idle for 30 s and closed TCP ones after 10 s
leave the table, so after the first half minute it holds a steady population that churns.

Every --interval seconds (and at the start and the end) it prints one row: the switch's resident memory
(VmRSS and VmHWM from /proc), the connections in its table, how many were added, expired and evicted since the
start, events lost, upcalls, and the UDP answers missed. The last lines give the RSS growth from start to end
and from the first interval to the end (after the table has filled). Every program it starts is bounded by
--minutes and stopped at the end.

A benchmark, not a test: it asserts nothing. tests/test_soak.py runs it for a few seconds.
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
from tcp import BENCH_ID, ROOT, start_switch, stop, stop_on_term  # noqa: E402
from tcp_conns import ensure_tools, extra_vip_text, start_servers, web_switch_text  # noqa: E402

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

VIP = "203.0.113.10"
UDP_PORT = 53
UDP_IDLE_S = 30
UDP_SERVER = ROOT / "tests" / "lb_server.py"
# c1's UDP clients: --rate datagrams a second for --seconds, each from a new socket; prints answers and misses.
UDP_CLIENT = """
import json, socket, sys, time
vip, port, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
start = time.monotonic(); sent = answered = 0
while time.monotonic() - start < seconds:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
    s.sendto(b"query", (vip, port)); sent += 1
    try:
        s.recv(100); answered += 1
    except OSError:
        pass
    s.close()
    time.sleep(max(0.0, start + sent / rate - time.monotonic()))
print(json.dumps({"sent": sent, "answered": answered}), flush=True)
"""


def switch_config(scheduler: str, workdir: Path) -> str:
    text = web_switch_text("netns/lb-sw.toml", scheduler)
    text = text.replace('datapath = "c"', f'datapath = "c"\nconn_udp_s = {UDP_IDLE_S}')
    text += extra_vip_text("udp", VIP, UDP_PORT, "udp")
    path = workdir / f"soak-{scheduler}.toml"
    path.write_text(text)
    return str(path)


def memory_kib(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def sample(name: str, pid: int, t: float) -> dict:
    stats = request(name, {"cmd": "show", "what": "stats"})
    mem = memory_kib(pid)
    return {"t_s": round(t), "rss_kib": mem["VmRSS"], "hwm_kib": mem["VmHWM"], "conns": stats["conn_conns"],
            "inserts": stats["conn_inserts"], "expired": stats["conn_expired"], "evictions": stats["conn_evictions"],
            "events_dropped": stats["conn_events_dropped"], "upcalls": stats["upcalls"]}


def soak(topo: Topology, workdir: Path, args) -> dict:
    seconds = args.minutes * 60
    proc = start_switch(switch_config(args.scheduler, workdir), "c", workdir)
    name = f"lb{BENCH_ID}"
    load = []
    try:
        start = time.monotonic()
        samples = [sample(name, proc.pid, 0)]
        load.append(topo.popen("c1", ["wrk", "-t1", f"-c{args.connections}", f"-d{max(1, round(seconds))}s",
                                      "-H", "Connection: close", f"http://{VIP}/"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        load.append(topo.popen("c1", [sys.executable, "-c", UDP_CLIENT, VIP, str(UDP_PORT), str(args.udp_rate),
                                      str(seconds)], stdout=subprocess.PIPE, text=True))
        next_sample = start + args.interval
        while time.monotonic() < start + seconds:
            time.sleep(max(0.0, min(next_sample, start + seconds) - time.monotonic()))
            if time.monotonic() >= next_sample and time.monotonic() < start + seconds:
                samples.append(sample(name, proc.pid, time.monotonic() - start))
                next_sample += args.interval
        wrk_out = load[0].communicate(timeout=60)[0]
        udp = json.loads(load[1].communicate(timeout=60)[0])
        samples.append(sample(name, proc.pid, time.monotonic() - start))
        vips = request(name, {"cmd": "show", "what": "vips"})
    finally:
        for p in load:
            if p.poll() is None:
                p.kill()
                p.wait()
        stop(proc)
    requests = next((line.split()[0] for line in wrk_out.splitlines() if "requests in" in line), "0")
    return {"samples": samples, "tcp_requests": int(requests), "udp": udp,
            "vip_total_conns": {v["name"]: sum(b["total_conns"] for b in v["backends"]) for v in vips}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--udp-rate", type=float, default=300)
    parser.add_argument("--scheduler", default="rr")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    stop_on_term()

    ensure_tools()
    topo = Topology.load(ROOT / "netns/lb.toml", id=BENCH_ID)
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        workdir = Path(tmp)
        servers = []
        try:
            topo.up()
            # Minutes of short connections: ports enough, and TIME_WAIT ones reused (the switch sees the reuse).
            topo.exec("c1", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], check=True)
            topo.exec("c1", ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"], check=True)
            servers = start_servers(topo, workdir)
            for host, address in (("b1", "192.0.2.11"), ("b2", "192.0.2.12"), ("b3", "192.0.2.13")):
                servers.append(topo.popen(host, [sys.executable, str(UDP_SERVER), host, address, str(UDP_PORT),
                                                 "--udp"], stdout=subprocess.DEVNULL))
            time.sleep(0.5)
            result = soak(topo, workdir, args)
        finally:
            for server in servers:
                stop(server)
            topo.down()

    samples = result["samples"]
    print(f"{'t_s':>6} {'rss_MiB':>8} {'hwm_MiB':>8} {'conns':>7} {'inserts':>9} {'expired':>9} {'evictions':>9} "
          f"{'ev_dropped':>10} {'upcalls':>9}")
    for s in samples:
        print(f"{s['t_s']:>6} {s['rss_kib'] / 1024:>8.1f} {s['hwm_kib'] / 1024:>8.1f} {s['conns']:>7} "
              f"{s['inserts']:>9} {s['expired']:>9} {s['evictions']:>9} {s['events_dropped']:>10} {s['upcalls']:>9}")
    first, settled, last = samples[0], samples[1 if len(samples) > 2 else 0], samples[-1]
    udp = result["udp"]
    print(f"RSS start {first['rss_kib'] / 1024:.1f} MiB, end {last['rss_kib'] / 1024:.1f} MiB: "
          f"growth {(last['rss_kib'] - first['rss_kib']) / 1024:+.1f} MiB; from t={settled['t_s']} s to the end "
          f"{(last['rss_kib'] - settled['rss_kib']) / 1024:+.1f} MiB")
    print(f"{result['tcp_requests']} TCP requests (each a new connection), {udp['sent']} UDP queries "
          f"({udp['sent'] - udp['answered']} unanswered), {last['inserts']} connections through the table "
          f"({args.minutes:g} min, scheduler {args.scheduler}; a shared, loaded 2-core machine)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(result, minutes=args.minutes, interval=args.interval, connections=args.connections,
                           udp_rate=args.udp_rate, scheduler=args.scheduler), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
