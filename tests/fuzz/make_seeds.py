"""Captures real frames in namespace topologies and writes them as the fuzz targets' seed corpus.

    sudo .venv/bin/python tests/fuzz/make_seeds.py          # rewrites tests/fuzz/corpus/fuzz_{parse,datapath}/

Two topologies, each with real pyswitch switches between real hosts, and tcpdump in the hosts' namespaces and on a
trunk between two switches:

- L2: netns/trunk.toml's switches, hosts with IPv4 and IPv6 addresses: ARP, ping and ping6 (neighbour discovery),
  HTTP over TCP on IPv4 and IPv6 with the hosts' offloads on (GSO super-frames, partial checksums), UDP to a closed
  port (ICMP and ICMPv6 port unreachable), and the same frames 802.1Q-tagged on the trunk.
- L3: netns/routed.toml: ping and traceroute through the routing switch (ICMP time exceeded from the switch and from
  a router, port unreachable at the end).

Frames are classed by their headers and a few of each class kept (the smallest of a class first, so the corpus
stays small). fuzz_parse seeds are the frames themselves; fuzz_datapath seeds are the frames behind the two
bytes (and, for super-frames, the vnet header) that csrc/fuzz/fuzz_datapath.c reads first, sent to the ports whose
flows suit them, plus IPIP and GRE tunnels around captured packets for DECAP (no tunnel runs in these topologies)
and a few executed action lists. Every address is a test address inside namespaces the script makes and removes.
"""
import contextlib
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import rdpcap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from pyswitch.control.client import request  # noqa: E402
from pyswitch.testing import new_id  # noqa: E402
from pyswitch.topology import Topology  # noqa: E402

CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
PER_CLASS = 1  # frames kept of each class
CAPTURE_START_S = 1.0  # tcpdump's time to open its socket before traffic starts
SWITCH_START_S = 15.0

# What fuzz_datapath.c's first bytes mean (its header comment): the port byte picks the flow.
PORT_OUTPUT, PORT_VLANS, PORT_POP, PORT_ROUTE, PORT_NAT, PORT_LB_RING, PORT_LB, PORT_LB_REPLY = range(8)
PORT_DECAP, PORT_DECAP_DELIVER, PORT_FLOOD, PORT_ROUTE_MORE, PORT_STACKED, PORT_MISS = range(8, 14)
F_VNET, F_RX_CSUM, F_REPLY_CONN, F_CONN_FULL, F_EXPIRE = 0x01, 0x02, 0x20, 0x40, 0x80
CONN_NAT, CONN_FULLNAT, CONN_DSR, CONN_IPIP, CONN_GRE = range(1, 6)
VNET_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6 = 1, 1, 4
EXECUTE = 16

HTTP_BODY = 6000  # bytes of the served file: one response is a super-frame of a few segments


def l2_topology():
    """netns/trunk.toml's four hosts, with IPv6 addresses besides."""
    hosts = [("h1", "s1h1", "02:00:00:01:10:11", 11), ("h2", "s1h2", "02:00:00:01:20:21", 21),
             ("h3", "s2h3", "02:00:00:02:10:12", 12), ("h4", "s2h4", "02:00:00:02:20:22", 22)]
    return {
        "host": [{"name": name, "netns": f"psw-{{id}}t{name}"} for name, *_ in hosts],
        "link": [{"host": name, "name": "eth0", "peer": f"psw-{{id}}{peer}", "mac": mac,
                  "address": [f"198.51.100.{n}/24", f"2001:db8::{n}/64"]} for name, peer, mac, n in hosts],
        "wire": [{"a": "psw-{id}t1", "b": "psw-{id}t2"}],
    }


@contextlib.contextmanager
def running(topo, switch_configs, workdir):
    """The topology up with its switches running; everything removed afterwards, also after an error."""
    switches = []
    topo.up()
    try:
        for path in switch_configs:
            with open(os.path.join(ROOT, path)) as f:
                text = f.read().replace("{id}", topo.id)
            rendered = os.path.join(workdir, os.path.basename(path))
            with open(rendered, "w") as f:
                f.write(text)
            name = next(line.split('"')[1] for line in text.splitlines() if line.startswith("name"))
            log = open(rendered + ".log", "wb")
            process = subprocess.Popen([sys.executable, "-m", "pyswitch", "run", rendered], cwd=ROOT,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            switches.append((name, process, log))
        for name, process, _ in switches:
            wait_ready(name, process)
        yield topo
    finally:
        for _, process, log in switches:
            stop(process)
            log.close()
        topo.down()


def wait_ready(name, process):
    deadline = time.monotonic() + SWITCH_START_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"switch {name} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            request(name, {"cmd": "show", "what": "stats"}, timeout=1.0)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"switch {name} did not answer in {SWITCH_START_S} s")
        time.sleep(0.05)


def stop(process, grace_s=5.0):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def captures(topo, points, workdir):
    """tcpdump on each (host or None for the root namespace, interface); yields the pcap paths.

    As root (-Z), since the workdir is root's; in immediate mode, since a capture stopped right after the traffic
    would lose what still waits in the ring's unfinished block."""
    procs, paths = [], []
    for host, ifname in points:
        path = os.path.join(workdir, f"{host or 'root'}-{ifname}.pcap")
        argv = ["tcpdump", "-Z", "root", "--immediate-mode", "-i", ifname, "-s", "0", "-U", "-w", path]
        procs.append(topo.popen(host, argv, stderr=subprocess.DEVNULL) if host
                     else subprocess.Popen(argv, stderr=subprocess.DEVNULL))
        paths.append(path)
    time.sleep(CAPTURE_START_S)
    try:
        yield paths
    finally:
        time.sleep(0.5)
        for p in procs:
            stop(p)


def l2_traffic(topo, workdir):
    www = os.path.join(workdir, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "f"), "wb") as f:
        f.write(os.urandom(HTTP_BODY))
    server = topo.popen("h3", ["python3", "-m", "http.server", "8080", "--bind", "::", "--directory", www],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        topo.exec("h1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.51.100.12"], capture_output=True)
        topo.exec("h1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "1200", "2001:db8::12"],
                  capture_output=True)
        for url in ("http://198.51.100.12:8080/f", "http://[2001:db8::12]:8080/f"):
            topo.exec("h1", ["curl", "-s", "-o", "/dev/null", "-m", "5", url], capture_output=True)
        for family, address in (("AF_INET", "198.51.100.12"), ("AF_INET6", "2001:db8::12")):
            topo.exec("h1", ["python3", "-c", f"import socket; s = socket.socket(socket.{family}, socket.SOCK_DGRAM);"
                             f" s.sendto(b'x' * 40, ('{address}', 9))"], capture_output=True)
        time.sleep(0.3)
    finally:
        stop(server)


def l3_traffic(topo):
    topo.exec("h1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "203.0.113.11"], capture_output=True)
    topo.exec("h1", ["traceroute", "-n", "-q", "1", "-w", "1", "-m", "4", "203.0.113.11"], capture_output=True)


def capture_all(workdir):
    """Runs both topologies; returns every captured frame (bytes), in capture order."""
    paths = []
    l2 = Topology.from_dict(l2_topology(), id=new_id(), source="make_seeds L2")
    with running(l2, ["netns/trunk-sw1.toml", "netns/trunk-sw2.toml"], workdir):
        points = [("h1", "eth0"), ("h3", "eth0"), (None, f"psw-{l2.id}t1")]
        with captures(l2, points, workdir) as p:
            l2_traffic(l2, workdir)
        paths += p
    l3 = Topology.load(os.path.join(ROOT, "netns", "routed.toml"), id=new_id())
    with running(l3, ["netns/routed-sw.toml", "netns/routed-sw2.toml"], workdir):
        with captures(l3, [("h1", "eth0")], workdir) as p:
            l3_traffic(l3)
        paths += p
    frames = []
    for path in paths:
        frames += [bytes(pkt) for pkt in rdpcap(path)]
    return frames


def frame_class(frame):
    """A name for what the frame is, from its headers."""
    pkt = Ether(frame)
    name = "vlan-" if Dot1Q in pkt else ""
    if ARP in pkt:
        return name + ("arp-request" if pkt[ARP].op == 1 else "arp-reply")
    if IPv6 in pkt:
        ip6 = pkt[IPv6]
        if TCP in pkt:
            return name + "tcp6-" + ("super" if len(frame) > 1514 + 4 else str(pkt[TCP].flags))
        if UDP in pkt:
            return name + "udp6"
        return name + f"icmp6-{ip6.payload.type if hasattr(ip6.payload, 'type') else ip6.nh}"
    if IP in pkt:
        if TCP in pkt:
            return name + "tcp-" + ("super" if len(frame) > 1514 + 4 else str(pkt[TCP].flags))
        if UDP in pkt:
            return name + "udp"
        if ICMP in pkt:
            return name + f"icmp-{pkt[ICMP].type}"
        return name + f"ip-{pkt[IP].proto}"
    return name + f"eth-{pkt.type:04x}"


def pick(frames):
    """PER_CLASS frames of each class, the smallest first: {class: [frame, ...]}."""
    by_class = {}
    for frame in frames:
        by_class.setdefault(frame_class(frame), []).append(frame)
    return {name: sorted(set(group), key=len)[:PER_CLASS] for name, group in sorted(by_class.items())}


def gso_vnet(frame):
    """The vnet header PACKET_VNET_HDR gives a TCP super-frame: GSO, NEEDS_CSUM at the TCP header."""
    pkt = Ether(frame)
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    l4 = len(frame) - len(ip) + (ip.ihl * 4 if IP in pkt else 40)
    hdr_len = l4 + pkt[TCP].dataofs * 4
    gso_type = GSO_TCPV4 if IP in pkt else GSO_TCPV6
    return struct.pack("<BBHHHH", VNET_NEEDS_CSUM, gso_type, hdr_len, 1448, l4, 16)


def datapath_seeds(picked):
    """fuzz_datapath inputs: {name: bytes}."""
    seeds = {}

    def add(name, port, flags, frame, vnet=b""):
        seeds[name] = bytes([port, flags | (F_VNET if vnet else 0)]) + vnet + frame

    # One seed a class, on a port whose flow suits it (alternating between two where there are two); all the
    # connection modes between a TCP SYN and a UDP datagram.
    for n, (cls, frames) in enumerate(picked.items()):
        frame, other = frames[0], n % 2
        if cls.endswith("super"):
            add(f"{cls}-output", PORT_OUTPUT, 0, frame, gso_vnet(frame))
            if "tcp6" not in cls:
                add(f"{cls}-vlans", PORT_VLANS, 0, frame, gso_vnet(frame))
                add(f"{cls}-lb-ring", PORT_LB_RING, 0, frame, gso_vnet(frame))
        elif cls.startswith("vlan-"):
            add(f"{cls}-{('pop', 'stacked')[other]}", (PORT_POP, PORT_STACKED)[other], 0, frame)
        elif cls in ("tcp-S", "udp"):
            add(f"{cls}-route", PORT_ROUTE, F_RX_CSUM, frame)
            add(f"{cls}-nat", PORT_NAT, F_RX_CSUM, frame)
            add(f"{cls}-lb-ring", PORT_LB_RING, 0, frame)
            for mode in (CONN_NAT, CONN_DSR, CONN_GRE) if cls == "tcp-S" else (CONN_FULLNAT, CONN_IPIP):
                add(f"{cls}-lb-conn{mode}", PORT_LB, mode << 2, frame)
            add(f"{cls}-lb-reply", PORT_LB_REPLY, F_REPLY_CONN | F_EXPIRE, frame)
            add(f"{cls}-lb-reply-full", PORT_LB_REPLY, F_REPLY_CONN | F_CONN_FULL, frame)
        elif cls.startswith(("tcp-", "icmp-")):
            add(f"{cls}-{('route', 'route-more')[other]}", (PORT_ROUTE, PORT_ROUTE_MORE)[other], F_RX_CSUM, frame)
        else:
            add(f"{cls}-{('flood', 'miss')[other]}", (PORT_FLOOD, PORT_MISS)[other], 0, frame)
    # Tunnels around a captured packet, for DECAP: IPIP and GRE from a tunnel's far end to the switch.
    inner = next(Ether(f[0]) for c, f in picked.items() if c.startswith("icmp-"))
    outer = Ether(src=inner.src, dst=inner.dst)
    ipip = bytes(outer / IP(src="192.0.2.7", dst="198.51.100.11", proto=4) / inner[IP])
    gre = bytes(outer / IP(src="192.0.2.7", dst="198.51.100.11") / GRE() / inner[IP])
    add("ipip-decap", PORT_DECAP, 0, ipip)
    add("gre-decap-deliver", PORT_DECAP_DELIVER, 0, gre)
    # Executed action lists (4 bytes an action: type, arg, param), on a captured TCP packet.
    tcp = next(f[0] for c, f in picked.items() if c.startswith("tcp-") and not c.endswith("super"))
    lists = {
        "exec-output-vlan": [(1, 3, 0), (5, 10, 0), (1, 4, 0), (6, 0, 0), (1, 70, 0)],
        "exec-nat-route": [(9, 0, 1), (10, 0, 2), (11, 4000, 0), (12, 80, 0), (8, 0, 0), (1, 1, 0)],
        "exec-lb-decap": [(13, 0, 1), (15, 1, 0), (8, 0, 0), (14, 0, 0), (2, 0, 0xff)],
    }
    for name, acts in lists.items():
        body = bytes([len(acts)]) + b"".join(struct.pack("!BHB", t, a, p) for t, a, p in acts)
        seeds[name] = bytes([EXECUTE, F_RX_CSUM]) + body + tcp
    return seeds


def write(directory, seeds):
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(directory, f"{name}.bin"), "wb") as f:
            f.write(data)


def main():
    if os.geteuid() != 0:
        sys.exit("make_seeds.py: run as root (namespaces, veth pairs)")
    with tempfile.TemporaryDirectory(prefix="psw-seeds-") as workdir:
        frames = capture_all(workdir)
    picked = pick(frames)
    parse_seeds = {f"{cls}-{i}": frame for cls, group in picked.items() for i, frame in enumerate(group)}
    write(os.path.join(CORPUS, "fuzz_parse"), parse_seeds)
    dp_seeds = datapath_seeds(picked)
    write(os.path.join(CORPUS, "fuzz_datapath"), dp_seeds)
    digest = hashlib.sha256(b"".join(parse_seeds.values())).hexdigest()[:12]
    print(f"{len(frames)} frames captured in {len(picked)} classes: {', '.join(picked)}")
    print(f"wrote {len(parse_seeds)} fuzz_parse and {len(dp_seeds)} fuzz_datapath seeds (frames {digest})")


if __name__ == "__main__":
    main()
