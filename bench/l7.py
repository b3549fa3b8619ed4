"""L7 requests per second and spliced throughput: pyswitch's l7 VIP beside HAProxy, on the same hosts and links.

    sudo .venv/bin/python bench/l7.py [--quick] [--seconds 5] [--rows NAME,...] [--download-mb 1024]
                                      [--new-conns 32] [--keepalive-conns 8] [--no-rps] [--haproxy-splice]
                                      [--backend-rmem-max BYTES] [--json bench/results/l7.json]

netns/lb.toml's hosts (namespaces psw-{PSW_BENCH_ID}*): the client c1 on the LAN 198.51.100.0/24, the backends
b1, b2 and b3 on the LAN 192.0.2.0/24, each running Debian's nginx (installed if missing, run as our own
process with its own config, pid and log in a /tmp/psw-l7bench-* directory) on ports 80 and 8080: /v1/small
answers a 9-byte body, /v1/big.bin is a sparse file of --download-mb (read once before the runs, so it comes from
the page cache), /v1/up discards an upload as nginx reads it.  The content rule is the same on both L7 devices: a
path under /v1/ goes to the pool "api" (b1 and b2, round robin), anything else to "web" (b3); every request
measured is under /v1/.  Between the client's LAN and the backends' LAN sits one device at a time, on the same
four veth pairs:

    direct          Linux routing: the root-namespace ends of the veths move into a namespace psw-{id}lr that
                    holds the two gateways (198.51.100.1, and 192.0.2.1 on a bridge of the backends' ends) and
                    forwards; the client addresses b1 and b2 themselves on port 8080 (wrk's two threads one
                    each), no L7 device.  The ceiling: what the backends and the client give.
    haproxy http    the same router namespace, and Debian's HAProxy in it (one thread, pinned to core 1), bound to
                    the VIP 203.0.113.20:80 on its loopback, `mode http`: `use_backend api if { path_beg /v1/ }`,
                    `default_backend web`.  The client's connection ends in HAProxy's kernel; HAProxy opens its
                    own to the backend from 192.0.2.1 and reads every request.
    haproxy tcp     the same in `mode tcp`: backend api, round robin, no rule (an L4 proxy, for reference).
    pyswitch routed pyswitch C (pinned to core 1) on the root-namespace ends as the L3 switch (netns/lb-sw.toml's
                    ports and VLANs), the client addressing b1 and b2 directly on port 8080: what its datapath
                    costs with no VIP.
    pyswitch l7     the same switch with an l7 VIP 203.0.113.20:80 with the rule above: the switch answers the
                    handshake with a SYN cookie, reads the first request (Python slow path), opens the backend's
                    side in the client's name and splices the two halves in C.

The rows without a VIP use port 8080 so that their connections leave no TIME_WAIT on the tuples pyswitch's
backend side uses (see DIRECT_PORT).  By default RPS steers what arrives at the middle device's ends to core 1
(--no-rps: the kernel's default, the sender's core), so that the router namespace, HAProxy's kernel half and
pyswitch's AF_PACKET receive all run on the device's own core.

Per row: (a) requests/s with a new connection per request (wrk, --new-conns in flight, "Connection: close"):
the L7 connection-setup rate, pyswitch's slow path; (b) requests/s over --keepalive-conns keep-alive
connections; (c) one --download-mb download over one connection (curl), Gbit/s; (d) one upload of the same size
(curl -T to /v1/up), Gbit/s.  wrk, curl and nginx run on core 0, the device in the middle on core 1.  Besides:
the middle device's CPU per request (pyswitch's or HAProxy's process, user + system), the backends' accepted
connections per request (TcpPassiveOpens in their namespaces), and for pyswitch the upcalls per request and the
l7_* counters that moved.  The load average is printed beside the figures.  --haproxy-splice adds HAProxy's
`option splice-auto`; --backend-rmem-max sets the backends' tcp_rmem maximum, which decides the window scale
they announce (pyswitch tells clients 2^7; l7_wscale_mismatch counts backends that differ).

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
from ovs import apt_install_quietly  # noqa: E402
from pps import FORWARDER_CPU, GENERATOR_CPU, LinuxRouter, pin  # noqa: E402
from tcp import BENCH_ID, ROOT, start_switch, stop, stop_on_term  # noqa: E402

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

VIP = "203.0.113.20"
POOL = ["192.0.2.11", "192.0.2.12"]         # "api": what /v1/ goes to
DEFAULT = "192.0.2.13"                      # "web": the default pool
BACKEND_HOSTS = ("b1", "b2", "b3")
# The rows without a VIP reach the same nginx on another port.  pyswitch opens the backend's side in the client's
# name, with the client's ISN and timestamps: on port 80 it would meet the TIME_WAITs that nginx keeps (for 60 s)
# from the client's direct connections of the rows before, and a SYN below one's sequence numbers is answered
# with an ACK of the old connection (RFC 9293), which the switch retries for a second and more.
DIRECT_PORT = 8080
ROWS = ["direct", "pyswitch routed", "pyswitch l7", "haproxy http", "haproxy tcp"]
PATHS = {
    "direct": "c1 -> Linux routing (netns psw-{id}lr) -> b1|b2 port 8080; no L7 device",
    "pyswitch routed": "c1 -> pyswitch C, L3 only (AF_PACKET) -> b1|b2 port 8080; no VIP",
    "pyswitch l7": f"c1 -> pyswitch l7 VIP {VIP} (cookie handshake + first request in Python, then spliced in C)"
                   " -> b1|b2, in the client's name",
    "haproxy http": f"c1 -> kernel TCP in netns psw-{{id}}lr -> HAProxy mode http {VIP} -> kernel TCP from "
                    "192.0.2.1 -> b1|b2",
    "haproxy tcp": f"c1 -> kernel TCP in netns psw-{{id}}lr -> HAProxy mode tcp {VIP} -> kernel TCP from "
                   "192.0.2.1 -> b1|b2",
}
# The root-namespace ends of netns/lb.toml's links: what pyswitch reads, and what moves into the router namespace.
ENDS = {"198.51.100.1/24": [f"psw-{BENCH_ID}l-c1"],
        "192.0.2.1/24": [f"psw-{BENCH_ID}l-{h}" for h in BACKEND_HOSTS]}
ALL_ENDS = [end for ends in ENDS.values() for end in ends]
ROUTER_NETNS = f"psw-{BENCH_ID}lr"          # LinuxRouter's
TOOLS = {"wrk": "wrk", "nginx": "nginx-light", "haproxy": "haproxy", "curl": "curl"}
SERVICE_PIDFILES = [Path("/run/haproxy.pid"), Path("/run/nginx.pid")]   # where the packages' services keep theirs
POLICY_DENY = "#!/bin/sh\n# pyswitch bench/l7.py: no service may start while its packages install.\nexit 101\n"
SMALL_BODY = "small ok\\n"                  # nginx's return text: 9 bytes on the wire

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir}; uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 80 reuseport backlog=4096;
        listen {direct_port} reuseport backlog=4096;
        root {www};
        location = /v1/small {{ return 200 "{body}"; }}
        location = /v1/up {{ client_max_body_size 0; return 204; }}
    }}
}}
"""
HAPROXY_CONF = """global
    nbthread 1
    maxconn 4000                # its descriptors (two a connection, splice's pipes) within this machine's 20000
defaults
    mode {mode}
    timeout connect 5s
    timeout client 30s
    timeout server 30s
{splice}frontend site
    bind {vip}:80
{rules}
backend api
    balance roundrobin
    server b1 {b1}:80
    server b2 {b2}:80
backend web
    server b3 {b3}:80
"""
HAPROXY_RULES = {"http": "    use_backend api if { path_beg /v1/ }\n    default_backend web",
                 "tcp": "    default_backend api"}
SWITCH_VIP = f"""
[[vip]]
name = "site"
address = "{VIP}"
port = 80
protocol = "tcp"
mode = "l7"
default_pool = "web"

[[vip.rule]]
path_prefix = "/v1/"
pool = "api"

[[vip.pool]]
name = "api"
scheduler = "rr"
backends = ["{POOL[0]}:80", "{POOL[1]}:80"]

[[vip.pool]]
name = "web"
backends = ["{DEFAULT}:80"]
"""
# wrk's threads each connect to one address: the direct rows give each thread a backend of the pool in turn.
WRK_POOL_LUA = """-- bench/l7.py: thread N connects to backend N mod the pool, as the L7 devices spread connections
local backends = {%s}
local made = 0
function setup(thread)
    made = made + 1
    thread.addr = wrk.lookup(backends[(made - 1) %% #backends + 1], "%d")[1]
end
""" % (", ".join(f'"{b}"' for b in POOL), DIRECT_PORT)


# -- tools ----------------------------------------------------------------------------------------------------------

def ensure_installed() -> None:
    """Installs the Debian packages of TOOLS whose command is missing, without leaving their services running: a
    policy-rc.d answering 101 while apt runs (one already in place is left as it is), and a service's daemon that
    started all the same is stopped by the PID in its pidfile, only if that pidfile is new (as bench/ovs.py)."""
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt", file=sys.stderr, flush=True)
    result = apt_install_quietly(missing, lambda: {p for p in SERVICE_PIDFILES if p.exists()}, POLICY_DENY)
    if result.returncode != 0:
        raise RuntimeError(f"apt-get install {' '.join(missing)} failed: "
                           f"{(result.stderr or result.stdout).strip()[-500:]}")
    still = [tool for tool in TOOLS if shutil.which(tool) is None]
    if still:
        raise RuntimeError(f"installed {' '.join(missing)}, but {' '.join(still)} is not on PATH")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def passive_opens(topo: Topology) -> int:
    """TCP connections the backends accepted so far (TcpPassiveOpens, each backend's namespace's own)."""
    total = 0
    for host in BACKEND_HOSTS:
        lines = [line.split() for line in topo.exec(host, ["cat", "/proc/net/snmp"], capture_output=True,
                                                    text=True, check=True).stdout.splitlines()
                 if line.startswith("Tcp:")]
        total += int(lines[1][lines[0].index("PassiveOpens")])
    return total


def steer_to_forwarder(ends: list[str], netns: str | None, on: bool) -> None:
    """RPS on the middle device's ends: what arrives there is processed on the forwarder's core (a veth otherwise
    runs its receiver's softirq on the sender's core, so the Linux router would forward on the client's and
    nginx's core, and core 1 would sit idle)."""
    mask = format(1 << int(FORWARDER_CPU), "x") if on else "0"
    script = "; ".join(f"echo {mask} > /sys/class/net/{end}/queues/rx-0/rps_cpus" for end in ends)
    subprocess.run((["ip", "netns", "exec", netns] if netns else []) + ["sh", "-c", script], check=True)


def flush_neighbours(topo: Topology) -> None:
    """The gateways' MACs change between the router namespace and the switch: forget the old ones."""
    for host in ("c1", *BACKEND_HOSTS):
        topo.exec(host, ["ip", "neigh", "flush", "all"], capture_output=True)


# -- servers and the devices in the middle --------------------------------------------------------------------------

def start_backends(topo: Topology, workdir: Path, size: int) -> list[subprocess.Popen]:
    www = workdir / "www"
    (www / "v1").mkdir(parents=True, exist_ok=True)
    big = www / "v1" / "big.bin"
    with open(big, "wb") as f:          # sparse: no disk, and zeros cost nginx's sendfile nothing to make
        f.truncate(size)
    with open(big, "rb") as f:          # into the page cache now, not during the first row's download
        while f.read(1 << 20):
            pass
    servers = []
    for host in BACKEND_HOSTS:
        home = workdir / f"nginx-{host}"
        home.mkdir(exist_ok=True)
        (home / "nginx.conf").write_text(NGINX_CONF.format(dir=home, www=www, body=SMALL_BODY,
                                                                  direct_port=DIRECT_PORT))
        servers.append(topo.popen(host, ["taskset", "-c", GENERATOR_CPU, "nginx", "-p", str(home), "-e",
                                         str(home / "error.log"), "-c", str(home / "nginx.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for host, address in zip(BACKEND_HOSTS, (*POOL, DEFAULT)):
        for port in (80, DIRECT_PORT):
            wait_http(topo, host, f"http://{address}:{port}/v1/small", servers)
    return servers


def wait_http(topo: Topology, host: str, url: str, procs: list[subprocess.Popen], within: float = 10.0,
              log: Path | None = None) -> None:
    """Until `url` answers 200 from `host`; fails at once if one of `procs` has exited (with `log`'s end)."""
    deadline = time.monotonic() + within
    while True:
        out = topo.exec(host, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", url],
                        capture_output=True, text=True)
        if out.stdout == "200":
            return
        dead = [p.args for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"{url} does not answer from {host} ({out.stdout or out.stderr.strip()}); "
                               f"exited: {dead}" + (f"; {log.name}: {log.read_text()[-1000:]}" if log else ""))
        time.sleep(0.1)


def start_haproxy(mode: str, workdir: Path, splice: bool) -> subprocess.Popen:
    config = workdir / f"haproxy-{mode}.cfg"
    config.write_text(HAPROXY_CONF.format(mode=mode, vip=VIP, rules=HAPROXY_RULES[mode], b1=POOL[0], b2=POOL[1],
                                          b3=DEFAULT, splice="    option splice-auto\n" if splice else ""))
    log = open(workdir / f"haproxy-{mode}.log", "w")
    # ip netns exec and taskset both exec: the PID is HAProxy's own (-db: in the foreground, no master).
    proc = subprocess.Popen(["ip", "netns", "exec", ROUTER_NETNS, "taskset", "-c", FORWARDER_CPU, "haproxy", "-db",
                             "-f", str(config)], stdout=log, stderr=log)
    log.close()
    return proc


def switch_config(workdir: Path) -> str:
    """netns/lb-sw.toml's switch, ports and VLANs (its L4 VIP left out) with the l7 VIP."""
    text = (ROOT / "netns/lb-sw.toml").read_text()
    text = text[:text.index("[[vip]]")] + SWITCH_VIP
    path = workdir / "l7-bench-sw.toml"
    path.write_text(text)
    return str(path)


# -- measuring ------------------------------------------------------------------------------------------------------

def wrk(topo: Topology, url: str, seconds: int, connections: int, close: bool, script: Path | None) -> dict:
    argv = ["taskset", "-c", GENERATOR_CPU, "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    if script:
        argv += ["-s", str(script)]
    out = topo.exec("c1", [*argv, url], capture_output=True, text=True, timeout=seconds + 30)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    requests = re.search(r"(\d+) requests in", out.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if not rate:
        raise RuntimeError(f"wrk {url}: {out.stdout} {out.stderr}")
    return {"rps": round(float(rate.group(1))), "requests": int(requests.group(1)) if requests else 0,
            "errors": (sum(map(int, errors.groups())) if errors else 0) + (int(non2xx.group(1)) if non2xx else 0)}


def transfer(topo: Topology, url: str, upload: Path | None, size: int) -> float:
    """Gbit/s of one download of `url` (upload None) or one upload of the file `upload`, over one connection."""
    argv = ["taskset", "-c", GENERATOR_CPU, "curl", "-s", "-S", "-o", "/dev/null", "--max-time", "300",
            "-w", "%{http_code} %{size_download} %{size_upload} %{time_total}"]
    if upload:
        argv += ["-H", "Expect:", "-T", str(upload)]
    out = topo.exec("c1", [*argv, url], capture_output=True, text=True, timeout=330)
    code, down, up, seconds = out.stdout.split() if out.returncode == 0 else ("0", "0", "0", "0")
    moved = int(float(up if upload else down))
    if code not in ("200", "204") or moved != size:
        raise RuntimeError(f"curl {url}: {out.stdout!r} {out.stderr.strip()} (expected {size} bytes)")
    return round(moved * 8 / float(seconds) / 1e9, 2)


L7_GAUGES = ("l7_sessions", "l7_spliced_open")
# The connection table's side: misses come up as new connections, a held connection's packets as l7 upcalls.
CONN_COUNTERS = ("conn_misses", "conn_l7_upcalls", "conn_splices", "conn_splice_rewritten", "conn_splice_dropped")


class Meter:
    """What the device in the middle spends while a load runs: its CPU, the backends' accepts, pyswitch's stats."""

    def __init__(self, topo: Topology, pid: int | None, switch: str | None):
        self.topo, self.pid, self.switch = topo, pid, switch

    def _read(self):
        cpu = cpu_seconds(self.pid) if self.pid else 0.0
        stats = request(self.switch, {"cmd": "show", "what": "stats"}) if self.switch else {}
        return cpu, passive_opens(self.topo), stats

    def around(self, load):
        """Runs `load()` (a wrk result) and adds per-request costs to its result."""
        cpu0, opens0, stats0 = self._read()
        result = load()
        cpu1, opens1, stats1 = self._read()
        requests = max(1, result["requests"])
        result["backend_conns_per_request"] = round((opens1 - opens0) / requests, 3)
        if self.pid:
            result["cpu_us_per_request"] = round((cpu1 - cpu0) / requests * 1e6, 1)
        if self.switch:
            result["upcalls_per_request"] = round((stats1["upcalls"] - stats0["upcalls"]) / requests, 2)
            # Counters as the change over the load; the gauges (sessions held, spliced connections known) as they
            # are at its end.
            result["l7_counters"] = {k: v if k in L7_GAUGES else v - stats0.get(k, 0) for k, v in stats1.items()
                                     if (k.startswith(("l7_", "splice_")) or k in CONN_COUNTERS) and isinstance(v, int)
                                     and (v != stats0.get(k, 0) or k in L7_GAUGES)}
        return result


def measure(topo: Topology, row: str, meter: Meter, args, workdir: Path) -> dict:
    direct = row in ("direct", "pyswitch routed")
    script = None
    if direct:
        script = workdir / "pool.lua"
        script.write_text(WRK_POOL_LUA)
    host = f"{POOL[0]}:{DIRECT_PORT}" if direct else VIP    # wrk's threads replace it by the script's
    small, big, up = (f"http://{host}/v1/{name}" for name in ("small", "big.bin", "up"))
    if not args.quick:                              # warm up: ARP, flows, the backends' first accepts
        wrk(topo, small, 1, args.new_conns, True, script)
    else:
        topo.exec("c1", ["curl", "-s", "-o", "/dev/null", small, small], capture_output=True, timeout=30)
    new = meter.around(lambda: wrk(topo, small, args.seconds, args.new_conns, True, script))
    keepalive = meter.around(lambda: wrk(topo, small, args.seconds, args.keepalive_conns, False, script))
    size = args.download_mb << 20
    download = transfer(topo, big, None, size)
    upload = transfer(topo, up, workdir / "www" / "v1" / "big.bin", size)
    return {"path": PATHS[row].format(id=BENCH_ID), "new_conn_rps": new["rps"], "keepalive_rps": keepalive["rps"],
            "download_gbps": download, "upload_gbps": upload, "new_conn": new, "keepalive": keepalive}


def run_router_rows(topo: Topology, rows: list[str], args, workdir: Path, results: dict) -> None:
    with LinuxRouter(ENDS, None, []):
        flush_neighbours(topo)
        router = ["ip", "netns", "exec", ROUTER_NETNS]
        subprocess.run([*router, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*router, "ip", "addr", "add", f"{VIP}/32", "dev", "lo"], check=True)
        subprocess.run([*router, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], check=True)
        steer_to_forwarder(ALL_ENDS, ROUTER_NETNS, args.rps)
        if "direct" in rows:
            print("== direct", flush=True)
            results["direct"] = measure(topo, "direct", Meter(topo, None, None), args, workdir)
        for mode in ("http", "tcp"):
            row = f"haproxy {mode}"
            if row not in rows:
                continue
            print(f"== {row}", flush=True)
            proc = start_haproxy(mode, workdir, args.haproxy_splice)
            try:
                wait_http(topo, "c1", f"http://{VIP}/v1/small", [proc], log=workdir / f"haproxy-{mode}.log")
                results[row] = measure(topo, row, Meter(topo, proc.pid, None), args, workdir)
            finally:
                stop(proc)


def run_switch_rows(topo: Topology, rows: list[str], args, workdir: Path, results: dict) -> None:
    flush_neighbours(topo)
    steer_to_forwarder(ALL_ENDS, None, args.rps)
    proc = start_switch(switch_config(workdir), "c", workdir)
    try:
        pin(proc.pid)
        name = f"lb{BENCH_ID}"
        for row in ("pyswitch routed", "pyswitch l7"):
            if row not in rows:
                continue
            print(f"== {row}", flush=True)
            target = f"{POOL[0]}:{DIRECT_PORT}" if row == "pyswitch routed" else VIP
            wait_http(topo, "c1", f"http://{target}/v1/small", [proc])
            results[row] = measure(topo, row, Meter(topo, proc.pid, name), args, workdir)
    finally:
        stop(proc)
        steer_to_forwarder(ALL_ENDS, None, False)


# -- the table ------------------------------------------------------------------------------------------------------

METRICS = [("new_conn_rps", "new-conn req/s"), ("keepalive_rps", "keep-alive req/s"),
           ("download_gbps", "download Gbit/s"), ("upload_gbps", "upload Gbit/s")]


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def print_tables(results: dict, load: dict) -> None:
    print(f"\nload average {load['start'][0]:.2f} at the start, {load['end'][0]:.2f} at the end "
          f"(1-minute; {os.cpu_count()} cores)")
    print(f"\n{'row':<16}" + "".join(f"{title:>18}" for _, title in METRICS))
    for row, r in results.items():
        print(f"{row:<16}" + "".join(f"{r[key]:>18,}" if "rps" in key else f"{r[key]:>18.2f}" for key, _ in METRICS))
    for base_name in ("haproxy http", "direct"):
        base = results.get(base_name)
        if not base:
            continue
        print(f"\nratio to {base_name:<7}" + "".join(f"{title:>18}" for _, title in METRICS))
        for row, r in results.items():
            print(f"{row:<16}" + "".join(f"{_ratio(r[key], base[key]):>18}" for key, _ in METRICS))
    print(f"\n{'row':<16} {'new-conn: cpu us/req':>21} {'backend conns/req':>18} {'upcalls/req':>12} "
          f"{'errors':>7} {'keep-alive: cpu us/req':>23} {'backend conns/req':>18}")
    for row, r in results.items():
        new, ka = r["new_conn"], r["keepalive"]
        print(f"{row:<16} {new.get('cpu_us_per_request', '-'):>21} {new['backend_conns_per_request']:>18} "
              f"{new.get('upcalls_per_request', '-'):>12} {new['errors'] + ka['errors']:>7} "
              f"{ka.get('cpu_us_per_request', '-'):>23} {ka['backend_conns_per_request']:>18}")
    print()
    for row, r in results.items():
        print(f"{row:<16} {r['path']}")
    l7 = results.get("pyswitch l7", {}).get("new_conn", {}).get("l7_counters")
    if l7:
        spliced = max(1, l7.get("l7_spliced", 0))
        print(f"\npyswitch l7, new-conn run, per spliced connection: {l7.get('conn_misses', 0) / spliced:.2f} "
              f"connection-table misses (up as new), {l7.get('conn_l7_upcalls', 0) / spliced:.2f} packets of held "
              "connections up; counters that moved (sessions and spliced_open: at the end): "
              + ", ".join(f"{k} {v}" for k, v in sorted(l7.items())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-second loads, 64 MB transfers: a smoke run")
    parser.add_argument("--seconds", type=int, default=None, help="each wrk load (default 5, --quick 1)")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--download-mb", type=int, default=None, help="each transfer (default 1024, --quick 64)")
    parser.add_argument("--new-conns", type=int, default=32, help="wrk's connections in flight, Connection: close")
    parser.add_argument("--keepalive-conns", type=int, default=8, help="wrk's keep-alive connections")
    parser.add_argument("--no-rps", dest="rps", action="store_false",
                        help="leave the middle device's ends without RPS (their receive work on the sender's core)")
    parser.add_argument("--haproxy-splice", action="store_true",
                        help="HAProxy with `option splice-auto` (kernel splice(2) between its sockets)")
    parser.add_argument("--backend-rmem-max", type=int, metavar="BYTES",
                        help="the backends' net.ipv4.tcp_rmem maximum, which sets the window scale they announce")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.seconds = args.seconds or (1 if args.quick else 5)
    args.download_mb = args.download_mb or (64 if args.quick else 1024)
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}: choose from {', '.join(ROWS)}")

    stop_on_term()
    ensure_installed()
    load = {"start": list(os.getloadavg())}
    topo = Topology.load(ROOT / "netns/lb.toml", id=BENCH_ID)
    measured: dict = {}
    with tempfile.TemporaryDirectory(prefix="psw-l7bench-") as tmp:
        workdir = Path(tmp)
        servers = []
        try:
            topo.up()
            topo.exec("c1", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], check=True)
            if args.backend_rmem_max:
                for host in BACKEND_HOSTS:
                    topo.exec(host, ["sysctl", "-qw", f"net.ipv4.tcp_rmem=4096 131072 {args.backend_rmem_max}"],
                              check=True)
            servers = start_backends(topo, workdir, args.download_mb << 20)
            if {"direct", "haproxy http", "haproxy tcp"} & set(rows):
                run_router_rows(topo, rows, args, workdir, measured)
            if {"pyswitch routed", "pyswitch l7"} & set(rows):
                run_switch_rows(topo, rows, args, workdir, measured)
        finally:
            for server in servers:
                stop(server)
            topo.down()
    load["end"] = list(os.getloadavg())
    results = {row: measured[row] for row in ROWS if row in measured}
    print_tables(results, load)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "seconds": args.seconds, "download_bytes": args.download_mb << 20,
                       "new_conns": args.new_conns, "keepalive_conns": args.keepalive_conns, "rps": args.rps,
                       "haproxy_splice": args.haproxy_splice, "backend_rmem_max": args.backend_rmem_max,
                       "load_average": load,
                       "cores": os.cpu_count(), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
