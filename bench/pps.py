"""Small-packet forwarding rate: 64-byte UDP frames through every forwarder of a scenario, side by side.

    sudo .venv/bin/python bench/pps.py [--scenarios l2,l3,l4-nat,l4-dsr] [--flows 1,256,100000] [--seconds 5]
                                       [--runs 3] [--forwarders NAME,...] [--json bench/results/pps.json]

A sender host offers 60-byte IPv4/UDP frames (64 on the wire) with trafgen (Debian netsniff-ng, installed if
missing), pinned to core 0, as fast as it can; the forwarder runs pinned to core 1.  "pyswitch c 2 workers" runs
the switch with `[switch] workers = 2`: worker k's thread is pinned to core (1 + k) mod the cores, so on a 2-core
machine worker 1 shares core 0 with the generator (and the kernel work of sending), and the slow path stays on
core 1 with worker 0.  Other pyswitch rows may be named with --forwarders: "pyswitch c 4 workers", or
"pyswitch c 2 workers 1 core", which keeps every worker on core 1 (what the workers cost without a core to gain).
Scenarios:

    l2      netns/demo.toml: h1 -> h2 in one VLAN.  Forwarders: the ceiling (bench/forwarder.c: TPACKET_V3 RX ring
            + sendmmsg, no parsing: the AF_PACKET I/O ceiling), pyswitch C and Python, the Linux bridge, and Open
            vSwitch's userspace datapath (bench/ovs.py) where it can be installed, with AF_PACKET ("system")
            and AF_XDP ports; "pyswitch c afxdp" is pyswitch C with its ports made afxdp.
    l3      netns/routed.toml: h1 (VLAN 10) -> h2 (VLAN 20) through the switch's VLAN interfaces.  Reference:
            Linux routing (the switch's ends moved into a router namespace with the same addresses).
    l4-nat  netns/lb.toml: c1 -> the UDP VIP 203.0.113.10:9 (maglev, nat) and its three backends.  Reference:
            nftables DNAT in a router namespace.  --flows is the number of client connections; the warm-up run
            creates them, so the measured runs meet established connections.
    l4-dsr  the same VIP in dsr mode.  Reference: Linux routing (dsr rewrites no address either).

Flows: 1 and 256 vary the UDP source port; beyond 65536, the source address and the port both walk (with
coprime periods: 211 addresses x 509 ports = 107,399 distinct 5-tuples), so the exact-match cache thrashes and
every lookup goes to the masked tables.  Receivers discard UDP at their interface's netdev ingress (nftables), so
their stacks cost the forwarder's core nothing; their rx counters still count every frame.

Offered and delivered rates come from interface counters (the sender's tx, the receivers' rx) over the run; each
figure is the median of --runs runs.  `core1 ns/pkt` is the forwarder core's busy time (user, system, softirq:
/proc/stat) per delivered packet; kernel forwarders run in softirq on the sender's core, so they have none, and
for "2 workers" it counts worker 0 (and the slow path) only: worker 1 is on the generator's core.  `switch ns/pkt`
is the pyswitch process's own CPU time (every thread, user and system: /proc/PID/stat) per delivered packet, which
other load on the machine changes far less than it changes the rates; the JSON also has each worker's share of
the frames (`worker_share`, from `show stats`), each worker thread's CPU per frame it took, and the frames the
switch's RX rings dropped (`ring_drops_per_s`: the kernel had no free ring frame for them).
After the runs, 20 pings at light load give the RTT through each forwarder: batching must not cost latency.

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
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tcp import BENCH_ID, ROOT, Bridge, start_switch, stop, with_port_type  # noqa: E402

from pyswitch.control.client import request  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

GENERATOR_CPU, FORWARDER_CPU = "0", "1"
MANY_FLOWS_ADDRESSES, MANY_FLOWS_PORTS = 211, 509   # coprime: 107,399 distinct (address, port) pairs
UDP_PORT = 9                                        # the discard port: what every scenario sends to
# "pyswitch DATAPATH[ N workers[ 1 core]]": a row of pyswitch; "1 core" keeps every worker on the forwarder's core.
PYSWITCH_ROW = re.compile(r"pyswitch (\w+)(?: (\d+) workers( 1 core)?)?")


@dataclass
class Scenario:
    """One topology, the switch config measured on it, and where the frames go."""
    topology: str                                   # netns/*.toml
    switch: str                                     # the pyswitch config template
    sender: str                                     # host that runs trafgen
    receivers: list[str]                            # hosts whose rx counters count as delivered
    dst: str                                        # the frames' destination address
    gateway: str | None                             # next hop whose MAC the frames carry (None: the receiver's)
    ends: list[str]                                 # the root-namespace interfaces forwarders attach to
    forwarders: list[str]                           # the rows, in order
    vip_mode: str | None = None                     # l4: the UDP VIP's mode
    router: dict = field(default_factory=dict)      # Linux router: end -> address (ends in one list share a bridge)


def _ends(*names):
    return [f"psw-{BENCH_ID}{name}" for name in names]


SCENARIOS = {
    "l2": Scenario("netns/demo.toml", "netns/demo-sw.toml", "h1", ["h2"], "198.51.100.12", None,
                   _ends("sw-h1", "sw-h2"),
                   ["ceiling", "pyswitch c", "pyswitch c afxdp", "pyswitch c 2 workers", "pyswitch python",
                    "linux bridge", "open vswitch", "open vswitch afxdp"]),
    "l3": Scenario("netns/routed.toml", "netns/routed-sw.toml", "h1", ["h2"], "192.0.2.11", "198.51.100.1",
                   _ends("r-h1", "r-h2"), ["pyswitch c", "pyswitch c 2 workers", "pyswitch python", "linux routing"],
                   router={"198.51.100.1/24": _ends("r-h1"), "192.0.2.1/24": _ends("r-h2")}),
    "l4-nat": Scenario("netns/lb.toml", "netns/lb-sw.toml", "c1", ["b1", "b2", "b3"], "203.0.113.10",
                       "198.51.100.1", _ends("l-c1", "l-b1", "l-b2", "l-b3"),
                       ["pyswitch c", "pyswitch c 2 workers", "pyswitch python", "nftables dnat"], vip_mode="nat",
                       router={"198.51.100.1/24": _ends("l-c1"), "192.0.2.1/24": _ends("l-b1", "l-b2", "l-b3")}),
    "l4-dsr": Scenario("netns/lb.toml", "netns/lb-sw.toml", "c1", ["b1", "b2", "b3"], "203.0.113.10",
                       "198.51.100.1", _ends("l-c1", "l-b1", "l-b2", "l-b3"),
                       ["pyswitch c", "pyswitch python", "linux routing"], vip_mode="dsr",
                       router={"198.51.100.1/24": _ends("l-c1"), "192.0.2.1/24": _ends("l-b1", "l-b2", "l-b3")}),
}
BACKENDS = ["192.0.2.11", "192.0.2.12", "192.0.2.13"]


# -- frames and counters --------------------------------------------------------------------------------------------

def trafgen_config(flows: int, src_mac: str, dst_mac: str, src: str, dst: str) -> str:
    """One 60-byte IPv4/UDP frame to `dst` whose source port (and, beyond 65536 flows, source address) walks
    through `flows` values; trafgen fills in both checksums."""
    saddr = f"saddr={src}"
    if flows > 65536:
        first = 20
        saddr += f", saddr[3]=dinc({first}, {first + MANY_FLOWS_ADDRESSES - 1})"
        sport = f"dinc(10000, {10000 + MANY_FLOWS_PORTS - 1})"
    elif flows > 1:
        sport = f"dinc(10000, {10000 + flows - 1})"
    else:
        sport = "10000"
    return ("{\n"
            f"  eth(da={dst_mac}, sa={src_mac}),\n"
            f"  ipv4({saddr}, daddr={dst}, ttl=64),\n"
            f"  udp(sport={sport}, dport={UDP_PORT}),\n"
            "  fill(0x00, 18)\n"
            "}\n")


def distinct_flows(flows: int) -> int:
    return MANY_FLOWS_ADDRESSES * MANY_FLOWS_PORTS if flows > 65536 else flows


def counter(topo: Topology, host: str, name: str) -> int:
    out = topo.exec(host, ["cat", f"/sys/class/net/eth0/statistics/{name}"], capture_output=True, text=True)
    return int(out.stdout)


def cpu_busy_ns(cpu: str) -> int:
    """Non-idle time of one core so far (user, nice, system, irq, softirq, steal), from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
                return (user + nice + system + irq + softirq + steal) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    raise RuntimeError(f"no cpu{cpu} in /proc/stat")


def offer(topo: Topology, config: Path, seconds: float, sender: str = "h1",
          receivers: tuple[str, ...] = ("h2",)) -> tuple[float, float, float]:
    """(offered pps, delivered pps, forwarder-core busy ns per delivered packet) over `seconds` of trafgen."""
    def delivered():
        return sum(counter(topo, host, "rx_packets") for host in receivers)

    tx0, rx0, busy0 = counter(topo, sender, "tx_packets"), delivered(), cpu_busy_ns(FORWARDER_CPU)
    start = time.monotonic()
    topo.exec(sender, ["timeout", "-s", "INT", str(seconds), "taskset", "-c", GENERATOR_CPU, "trafgen", "--cpus",
                       "1", "--dev", "eth0", "--conf", str(config), "--no-sock-mem"],
              capture_output=True, timeout=seconds + 30)
    elapsed = time.monotonic() - start
    time.sleep(0.2)                     # let the last frames drain through the forwarder
    busy = cpu_busy_ns(FORWARDER_CPU) - busy0
    tx, rx = counter(topo, sender, "tx_packets") - tx0, delivered() - rx0
    return tx / elapsed, rx / elapsed, busy / rx if rx else float("nan")


def ping_rtt_ms(topo: Topology, sender: str, target: str) -> float:
    """The average RTT of 20 pings at light load: what batching costs when there is no batch."""
    topo.exec(sender, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "-q", target], capture_output=True)  # ARP, flows
    out = topo.exec(sender, ["ping", "-c", "20", "-i", "0.01", "-w", "5", "-q", target], capture_output=True,
                    text=True)
    match = re.search(r"= [\d.]+/([\d.]+)/", out.stdout)
    return float(match.group(1)) if match else float("nan")


def next_hop_mac(topo: Topology, scenario: Scenario) -> str:
    """The MAC the sender's frames must carry: the receiver's (l2) or the gateway's, learned by ARP."""
    target = scenario.gateway or scenario.dst
    topo.exec(scenario.sender, ["ip", "neigh", "flush", "dev", "eth0"], capture_output=True)
    topo.exec(scenario.sender, ["ping", "-c", "1", "-W", "2", target], capture_output=True)
    out = topo.exec(scenario.sender, ["ip", "neigh", "show", target], capture_output=True, text=True).stdout
    match = re.search(r"lladdr ([0-9a-f:]{17})", out)
    if not match:
        raise RuntimeError(f"{target} did not answer ARP from {scenario.sender}: {out!r}")
    return match.group(1)


def link_of(topo: Topology, host: str) -> tuple[str, str]:
    """(MAC, IPv4 address) of a host's eth0."""
    out = topo.exec(host, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout
    address = re.search(r"inet ([\d.]+)/", out).group(1)
    mac = topo.exec(host, ["cat", "/sys/class/net/eth0/address"], capture_output=True, text=True).stdout.strip()
    return mac, address


def discard_udp(topo: Topology, host: str) -> None:
    """Drop UDP at the host's netdev ingress: counted in rx, never handed to the stack (nftables)."""
    for rule in (["add", "table", "netdev", "psw_sink"],
                 ["add", "chain", "netdev", "psw_sink", "in", "{ type filter hook ingress device eth0 priority 0; }"],
                 ["add", "rule", "netdev", "psw_sink", "in", "ip", "protocol", "udp", "drop"]):
        topo.exec(host, ["nft", *rule], check=True)


# -- forwarders -----------------------------------------------------------------------------------------------------

def pin(pid: int) -> None:
    """Pins a process and all its threads to the forwarder's core."""
    subprocess.run(["taskset", "-a", "-p", "-c", FORWARDER_CPU, str(pid)], check=True, capture_output=True)


def pin_workers(pid: int, workers: int) -> dict[str, str]:
    """Pins pyswitch's datapath threads (named psw-worker-K) to cores of their own: worker K to core
    (FORWARDER_CPU + K) mod the cores.  The rest of the process (the slow path) stays where pin() put it.
    Returns thread name -> core."""
    cores = os.cpu_count() or 1
    placed = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        match = re.fullmatch(r"psw-worker-(\d+)", name)
        if match:
            core = str((int(FORWARDER_CPU) + int(match.group(1))) % cores)
            subprocess.run(["taskset", "-p", "-c", core, tid], check=True, capture_output=True)
            placed[name] = core
    if len(placed) != workers:
        raise RuntimeError(f"expected {workers} worker threads in pyswitch {pid}, found {sorted(placed)}")
    return placed


def build_forwarder(workdir: Path) -> Path:
    binary = workdir / "forwarder"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(ROOT / "bench" / "forwarder.c")], check=True)
    return binary


def ensure_tools() -> None:
    missing = [package for tool, package in (("trafgen", "netsniff-ng"), ("nft", "nftables"))
               if shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), capture_output=True)


def switch_template(scenario: Scenario, workdir: Path) -> str:
    """The scenario's switch config; for l4, with the UDP VIP of the measured mode and health checks off."""
    if scenario.vip_mode is None:
        return scenario.switch
    text = (ROOT / scenario.switch).read_text().replace('type = "http"', 'type = "none"')
    text += (f'\n[[vip]]\nname = "bench"\naddress = "{scenario.dst}"\nport = {UDP_PORT}\nprotocol = "udp"\n'
             f'mode = "{scenario.vip_mode}"\nscheduler = "maglev"\n')
    for address in BACKENDS:
        text += f'\n[[vip.backend]]\naddress = "{address}"\nport = {UDP_PORT}\n'
    path = workdir / f"pps-{scenario.vip_mode}.toml"
    path.write_text(text)
    return str(path)


class LinuxRouter:
    """The kernel's own router on a topology's switch ends: they move into a namespace of their own with the
    switch's addresses (`addresses`: address -> ends; several ends of one address share a bridge), forwarding
    on.  With `dnat` = (protocol, port), nftables DNATs the VIP's port to the backends in turn (numgen inc, like
    round robin); without, a VIP (if any) is routed to the first backend, as dsr would.  On exit the ends move back to
    the root namespace."""

    def __init__(self, addresses: dict[str, list[str]], vip: str | None, backends: list[str],
                 dnat: tuple[str, int] | None = None):
        self.addresses = addresses
        self.vip = vip
        self.backends = backends
        self.dnat = dnat
        self.netns = f"psw-{BENCH_ID}lr"

    def _ns(self, *argv, check=True):
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], check=check, capture_output=True)

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        try:
            self._ns("sysctl", "-qw", "net.ipv4.ip_forward=1")
            for n, (address, ends) in enumerate(self.addresses.items()):
                for end in ends:
                    subprocess.run(["ip", "link", "set", end, "netns", self.netns], check=True)
                    self._ns("ip", "link", "set", end, "up")
                device = ends[0]
                if len(ends) > 1:
                    device = f"psw-{BENCH_ID}lrb{n}"
                    self._ns("ip", "link", "add", device, "type", "bridge")
                    for end in ends:
                        self._ns("ip", "link", "set", end, "master", device)
                    self._ns("ip", "link", "set", device, "up")
                self._ns("ip", "addr", "add", address, "dev", device)
            if self.dnat:
                protocol, port = self.dnat
                backends = ", ".join(f"{i} : {b}" for i, b in enumerate(self.backends))
                for rule in (["add", "table", "ip", "psw_lb"],
                             ["add", "chain", "ip", "psw_lb", "pre", "{ type nat hook prerouting priority -100; }"],
                             ["add", "rule", "ip", "psw_lb", "pre", "ip", "daddr", self.vip, protocol, "dport",
                              str(port), "dnat", "to", "numgen", "inc", "mod", str(len(self.backends)), "map",
                              f"{{ {backends} }}"]):
                    self._ns("nft", *rule)
            elif self.vip:
                self._ns("ip", "route", "add", f"{self.vip}/32", "via", self.backends[0])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for ends in self.addresses.values():
            for end in ends:
                self._ns("ip", "link", "set", end, "netns", "1", check=False)
                subprocess.run(["ip", "link", "set", end, "up"], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], check=False)


def run_forwarder(name: str, scenario: Scenario, workdir: Path, forwarder: Path):
    """Starts `name` and returns a function that stops it, or None if it cannot run here."""
    if name == "ceiling":
        proc = subprocess.Popen([str(forwarder), *scenario.ends], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        pin(proc.pid)
        return lambda: stop(proc)
    if name.startswith("pyswitch"):
        match = PYSWITCH_ROW.match(name)       # a prefix: other words of a row name are another option's
        workers = int(match.group(2) or 1)
        template = switch_template(scenario, workdir)
        if name.endswith(" afxdp"):
            template = with_port_type(template, "afxdp", workdir)
        proc = start_switch(template, match.group(1), workdir, workers)
        pin(proc.pid)
        if workers > 1 and not match.group(3):
            pin_workers(proc.pid, workers)
        return lambda: stop(proc)
    if name.startswith("open vswitch"):
        import ovs
        installed = ovs.ensure_installed()
        if not installed:
            print(f"  {name}: {installed.reason}", file=sys.stderr)
            return None
        switch = ovs.OpenVSwitch(scenario.ends, cpu=FORWARDER_CPU,
                                 port_type="afxdp" if name.endswith("afxdp") else "system")
        try:
            switch.__enter__()
        except RuntimeError as exc:                 # a port that cannot start here (say, no XDP): no row
            print(f"  {name}: {exc}", file=sys.stderr)
            return None
        return lambda: switch.__exit__(None, None, None)
    if name == "linux bridge":
        context = Bridge(scenario.ends)
    else:
        context = LinuxRouter(scenario.router, scenario.dst if scenario.vip_mode else None, BACKENDS,
                              ("udp", UDP_PORT) if name == "nftables dnat" else None)
    context.__enter__()
    return lambda: context.__exit__(None, None, None)


# -- the run --------------------------------------------------------------------------------------------------------

def switch_usage(topo: Topology, scenario: Scenario) -> dict:
    """What the running pyswitch has used so far: its CPU time (ns, all threads), the frames each worker took, and
    the frames the receivers got."""
    name = re.search(r'(?m)^name *= *"([^"]+)"', (ROOT / scenario.switch).read_text()).group(1)
    stats = request(name.replace("{id}", BENCH_ID), {"cmd": "show", "what": "stats"}, timeout=5)
    pid = stats["pid"]
    threads = {}                                       # thread name -> its CPU ns
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            threads[comm] = threads.get(comm, 0) + _cpu_ns(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            pass                                       # a thread that just ended
    ports = request(name.replace("{id}", BENCH_ID), {"cmd": "show", "what": "ports"}, timeout=5)
    return {"cpu_ns": _cpu_ns(f"/proc/{pid}/stat"), "threads": threads,
            "ring_drops": sum(p["rx_dropped"] for p in ports),
            "workers_rx": stats.get("worker_rx_packets", [stats["rx_packets"]]),
            "delivered": sum(counter(topo, host, "rx_packets") for host in scenario.receivers)}


def _cpu_ns(stat_path: str) -> int:
    """utime + stime of a process or thread, in ns."""
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def measure(topo: Topology, scenario: Scenario, name: str, flows: int, args, workdir: Path, forwarder: Path):
    stop_forwarder = run_forwarder(name, scenario, workdir, forwarder)
    if stop_forwarder is None:
        print(f"  {name}: not available here, skipped", file=sys.stderr)
        return None
    try:
        src_mac, src = link_of(topo, scenario.sender)
        config = workdir / f"udp-{flows}.trafgen"
        config.write_text(trafgen_config(flows, src_mac, next_hop_mac(topo, scenario), src, scenario.dst))
        # Warm up: learning, flows, ARP, and in l4 every connection; long enough to walk every flow twice.
        offer(topo, config, max(1.0, 2 * distinct_flows(flows) / 200_000), scenario.sender,
              tuple(scenario.receivers))
        before = switch_usage(topo, scenario) if name.startswith("pyswitch") else None
        runs = [offer(topo, config, args.seconds, scenario.sender, tuple(scenario.receivers))
                for _ in range(args.runs)]
        after = switch_usage(topo, scenario) if before else None
        rtt = ping_rtt_ms(topo, scenario.sender, scenario.dst if scenario.vip_mode is None else BACKENDS[0])
    finally:
        stop_forwarder()
    in_kernel = name in ("linux bridge", "linux routing", "nftables dnat")
    row = {"flows": distinct_flows(flows), "forwarder": name,
           "offered_pps": round(statistics.median(r[0] for r in runs)),
           "delivered_pps": round(statistics.median(r[1] for r in runs)),
           "core1_ns_per_packet": None if in_kernel else round(statistics.median(r[2] for r in runs)),
           "ping_rtt_ms": rtt}
    if before:
        delivered = after["delivered"] - before["delivered"]
        taken = [a - b for a, b in zip(after["workers_rx"], before["workers_rx"])]
        row["switch_cpu_ns_per_packet"] = round((after["cpu_ns"] - before["cpu_ns"]) / delivered) if delivered else None
        row["worker_share"] = [round(t / max(1, sum(taken)), 3) for t in taken]
        row["ring_drops_per_s"] = round((after["ring_drops"] - before["ring_drops"]) / (args.runs * args.seconds))
        # Each worker thread's CPU per frame it took (one worker: the process is the worker).
        cpu = {k: after["threads"].get(k, 0) - before["threads"].get(k, 0) for k in after["threads"]}
        if len(taken) > 1:
            row["worker_cpu_ns_per_frame"] = [round(cpu.get(f"psw-worker-{k}", 0) / t) if t else None
                                              for k, t in enumerate(taken)]
        row["thread_cpu_ms"] = {k: round(v / 1e6) for k, v in sorted(cpu.items())}
    return row


def run_scenario(key: str, flows_list: list[int], forwarders: list[str] | None, args, workdir: Path,
                 forwarder: Path) -> dict:
    scenario = SCENARIOS[key]
    topo = Topology.load(ROOT / scenario.topology, id=BENCH_ID)
    results = {}
    try:
        topo.up()
        for host in scenario.receivers:
            discard_udp(topo, host)
        # Besides the scenario's rows, pyswitch variants named on the command line ("pyswitch c 4 workers").
        names = scenario.forwarders + [f for f in forwarders or [] if PYSWITCH_ROW.fullmatch(f)
                                       and f not in scenario.forwarders]
        for flows in flows_list:
            for name in names:
                if forwarders and name not in forwarders:
                    continue
                row = measure(topo, scenario, name, flows, args, workdir, forwarder)
                if row is not None:
                    results[f"{key}, {name}, {row['flows']} flows"] = dict(row, scenario=key)
    finally:
        topo.down()
    return results


def print_table(results: dict) -> None:
    print(f"{'scenario, forwarder, flows':<44} {'offered pps':>12} {'delivered pps':>14} {'vs first':>9} "
          f"{'core1 ns/pkt':>13} {'ping ms':>8} {'switch ns/pkt':>14}")
    firsts = {}
    for key, r in results.items():
        base = firsts.setdefault((r["scenario"], r["flows"]), r["delivered_pps"] or 1)
        ns = "-" if r["core1_ns_per_packet"] is None else str(r["core1_ns_per_packet"])
        switch_ns = "-" if r.get("switch_cpu_ns_per_packet") is None else str(r["switch_cpu_ns_per_packet"])
        print(f"{key:<44} {r['offered_pps']:>12} {r['delivered_pps']:>14} {r['delivered_pps'] / base:>9.2f} "
              f"{ns:>13} {r['ping_rtt_ms']:>8.3f} {switch_ns:>14}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="l2")
    parser.add_argument("--flows", default=None, help="default: 1,256,100000 for l2 and l3, 100000 for l4")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--forwarders", default=None, help="only these rows (names as in the table)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    ensure_tools()
    forwarders = args.forwarders.split(",") if args.forwarders else None
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        workdir = Path(tmp)
        forwarder = build_forwarder(workdir)
        for key in args.scenarios.split(","):
            default = "100000" if key.startswith("l4") else "1,256,100000"
            flows_list = [int(f) for f in (args.flows or default).split(",")]
            results.update(run_scenario(key, flows_list, forwarders, args, workdir, forwarder))

    print_table(results)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "runs": args.runs, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
