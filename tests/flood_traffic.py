"""Floods for tests/test_floods_netns.py and bench/floods.py: trafgen configurations of each hostile stream, sent
by the host x of netns/floods.toml, bounded in count and time, and the good traffic measured beside them.

Each configuration lists several frames; trafgen sends them round robin, and `drnd()` fills its bytes anew for
every frame, so a few lines give a stream of random source MACs or random addresses.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

TOPOLOGY = "netns/floods.toml"
SWITCH = "netns/floods-sw.toml"
A1, A2, X, B = "198.51.100.11", "198.51.100.12", "198.51.100.66", "192.0.2.11"
A2_MAC = "02:00:00:00:10:12"
X_MAC = "02:00:00:00:10:66"
SWITCH_MAC_10 = "02:00:00:00:0a:01"          # the switch's VLAN 10 interface (floods-sw.toml)
SWITCH_IP_10 = "198.51.100.1"
EXPERIMENTAL_TYPE = 0x88B5                   # IEEE 802 local experimental EtherType: every host ignores it


def _mac(text: str) -> str:
    return ", ".join(f"0x{part}" for part in text.split(":"))


def _ip(text: str) -> str:
    return ", ".join(text.split("."))


def mac_flood() -> str:
    """Random unicast source MACs (locally administered: 0x02, then 5 random bytes), to the broadcast address
    (each new source installs a flow: the flow table fills too) and to random unknown unicast MACs (flooded)."""
    payload = "fill(0x00, 46)"
    return (f"{{ fill(0xff, 6), 0x02, drnd(5), c16({EXPERIMENTAL_TYPE}), {payload} }}\n"
            f"{{ 0x06, drnd(5), 0x02, drnd(5), c16({EXPERIMENTAL_TYPE}), {payload} }}\n")


def _arp(dst_mac: str, op: int, spa: str, tha: str, tpa: str) -> str:
    """One ARP frame from x; `spa` and `tpa` are written as trafgen bytes, so they may hold drnd()."""
    return (f"{{ {dst_mac}, {_mac(X_MAC)}, c16(0x0806), c16(1), c16(0x0800), 6, 4, c16({op}), "
            f"{_mac(X_MAC)}, {spa}, {tha}, {tpa}, fill(0x00, 18) }}\n")


def arp_storm() -> str:
    """x at full rate: requests for the switch's address from many senders in 198.51.100.0/24 (each would be
    a new neighbor), unsolicited replies to the switch from many senders, gratuitous ARP, and UDP to random
    addresses of VLAN 20's subnet (each a neighbor to resolve, with a packet that waits)."""
    bcast, switch = "fill(0xff, 6)", _mac(SWITCH_MAC_10)
    # Senders walk 198.51.100.128-254, away from a1, a2 and x: a storm that claimed a good host's address would
    # be ARP spoofing, which moves that host's traffic to x (a matter for ARP inspection, not for the bounds).
    random_sender = "198, 51, 100, dinc(128, 254)"
    return (_arp(bcast, 1, random_sender, "fill(0x00, 6)", _ip(SWITCH_IP_10))
            + _arp(switch, 2, random_sender, switch, _ip(SWITCH_IP_10))
            + _arp(bcast, 1, _ip("198.51.100.200"), "fill(0x00, 6)", _ip("198.51.100.200"))
            + f"{{ eth(da={SWITCH_MAC_10}, sa={X_MAC}), ipv4(saddr={X}, daddr=192.0.2.0, daddr[3]=drnd(), ttl=64),"
              f" udp(sport=4000, dport=9), fill(0x00, 18) }}\n")


def malformed() -> str:
    """Frames that lie, to a2 (switched) and to the switch (routed): truncated IPv4, IHL below 5, IHL beyond
    the frame, total length beyond the frame and below the header, a TCP data offset below 5, a truncated ARP,
    three VLAN tags, and an IPv4 header of random bytes.  (A runt shorter than an Ethernet header never
    leaves a veth: the kernel refuses to send it.)"""
    a2, sw, x = _mac(A2_MAC), _mac(SWITCH_MAC_10), _mac(X_MAC)
    ip_src_dst = f"{_ip(X)}, {_ip(A2)}"
    frames = [
        f"{a2}, {x}, c16(0x0800), 0x45, fill(0x00, 9)",                                     # ip_trunc
        f"{sw}, {x}, c16(0x0800), 0x43, 0, c16(40), fill(0x00, 36)",                         # ip_ihl (< 5)
        f"{a2}, {x}, c16(0x0800), 0x4f, 0, c16(40), fill(0x00, 36)",                         # ip_ihl (beyond)
        f"{sw}, {x}, c16(0x0800), 0x45, 0, c16(1500), fill(0x00, 8), {ip_src_dst}, fill(0x00, 26)",  # ip_len
        f"{a2}, {x}, c16(0x0800), 0x45, 0, c16(10), fill(0x00, 8), {ip_src_dst}, fill(0x00, 26)",    # ip_len
        f"{a2}, {x}, c16(0x0800), 0x45, 0, c16(40), c16(0), c16(0), 64, 6, c16(0), {ip_src_dst}, "
        f"c16(1), c16(2), fill(0x00, 8), 0x20, fill(0x00, 7)",                                # l4_trunc (doff 2)
        f"{sw}, {x}, c16(0x0806), c16(1), c16(0x0800), 6, 4, c16(1)",                        # arp (truncated)
        f"{a2}, {x}, c16(0x8100), c16(10), c16(0x8100), c16(10), c16(0x8100), c16(10), c16(0x0800), fill(0x45, 30)",
        f"{sw}, {x}, c16(0x0800), 0x45, drnd(40)",                                           # random header
    ]
    return "".join(f"{{ {frame} }}\n" for frame in frames)


FLOODS = {"mac": mac_flood, "arp": arp_storm, "malformed": malformed}


def tx_packets(topo, host: str) -> int:
    out = topo.exec(host, ["cat", "/sys/class/net/eth0/statistics/tx_packets"], capture_output=True, text=True)
    return int(out.stdout)


class Flood:
    """trafgen in host x with one of FLOODS, at most `count` frames and `seconds` long, `rate` frames a second
    (None: as fast as it can); a context manager that always ends it."""

    def __init__(self, topo, kind: str, workdir: Path, seconds: float, count: int, rate: int | None = None,
                 cpu: str | None = None):
        self.topo, self.seconds = topo, seconds
        self.config = Path(workdir) / f"{kind}.trafgen"
        self.config.write_text(FLOODS[kind]())
        argv = ["timeout", "-s", "INT", str(seconds)]
        if cpu is not None:
            argv += ["taskset", "-c", cpu]
        argv += ["trafgen", "--cpus", "1", "--dev", "eth0", "--conf", str(self.config), "--no-sock-mem",
                 "-n", str(count), "-q"]
        if rate is not None:
            argv += ["-b", f"{rate}pps"]
        self.argv = argv
        self.sent = 0

    def __enter__(self):
        self._before = tx_packets(self.topo, "x")
        self.process = self.topo.popen("x", self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)                 # let the flood reach the switch before the good traffic starts
        if self.process.poll() not in (None, 0):
            raise RuntimeError(f"trafgen failed: {self.process.communicate()[1]}")
        return self

    def __exit__(self, *exc):
        try:
            _, err = self.process.communicate(timeout=self.seconds + 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        self.sent = tx_packets(self.topo, "x") - self._before
        if exc[0] is None and self.process.returncode not in (0, 124, -2, 130) :
            raise RuntimeError(f"trafgen exited with {self.process.returncode}: {err}")
        return False


def ping_stats(topo, pairs, count: int = 40, interval: float = 0.05) -> dict:
    """Pings from every (host, address) of `pairs` at once, each given a second:
    {(host, address): (share answered, average RTT in ms or None)}."""
    procs = {pair: topo.popen(pair[0], ["ping", "-q", "-c", str(count), "-i", str(interval), "-W", "1", pair[1]],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for pair in pairs}
    stats = {}
    for pair, proc in procs.items():
        out, _ = proc.communicate(timeout=count * interval + 15)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        rtt = re.search(r"= [\d.]+/([\d.]+)/", out)
        stats[pair] = (int(match.group(2)) / int(match.group(1)) if match else 0.0,
                       float(rtt.group(1)) if rtt else None)
    return stats


def ping_fractions(topo, pairs, count: int = 40, interval: float = 0.05) -> dict:
    """ping_stats() without the RTT: {(host, address): share answered}."""
    return {pair: share for pair, (share, _rtt) in ping_stats(topo, pairs, count, interval).items()}


def tcp_gbits(topo, client: str, server: str, address: str, seconds: float) -> float:
    """Gbit/s one iperf3 TCP stream got from `client` to `server` in `seconds`."""
    srv = topo.popen(server, ["iperf3", "-s", "-1", "-B", address], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = topo.exec(client, ["iperf3", "-c", address, "-t", str(seconds), "-J"], capture_output=True,
                        text=True, timeout=seconds + 20)
        report = json.loads(out.stdout or "{}")
        return report.get("end", {}).get("sum_received", {}).get("bits_per_second", 0.0) / 1e9
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()


def switch_config(tmp_path: Path, settings: str = "", port_settings: dict | None = None) -> str:
    """netns/floods-sw.toml with `settings` added to [switch] and `port_settings` (port name -> lines) to ports."""
    text = Path(SWITCH).read_text().replace("[switch]", "[switch]\n" + settings, 1)
    for name, lines in (port_settings or {}).items():
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\n{lines}\n', 1)
    path = Path(tmp_path) / "floods-sw.toml"
    path.write_text(text)
    return str(path)


if __name__ == "__main__":                  # print a configuration: python tests/flood_traffic.py mac
    sys.stdout.write(FLOODS[sys.argv[1]]())
