"""AF_XDP ports (`type = "afxdp"`, csrc/xdp.c) with real hosts in namespaces.

Through a running switch (netns/demo.toml with netns/afxdp-sw.toml: h1 and h2 on afxdp ports, h3 on a TAP port
that keeps TSO): ping, TCP transfers compared byte for byte in every direction, port counters, a tagged trunk
between two switches, and no XDP program left on an interface after the switch stops or is killed.

Straight through the C datapath (memory port <-> afxdp port): what a frame without a vnet header becomes on the
way in (a partial checksum is recognised) and on the way out (checksums completed, GSO super-frames cut), checked
frame by frame on the far end of the veth; and an interface with two receive queues.
"""
import json
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from hosts import ping, transfer
from pyswitch import actions as A
from pyswitch.config import PortConfig
from pyswitch.fastpath import Datapath
from pyswitch.flowkey import FlowKey
from pyswitch.ports import AfXdpPort, PortError

pytestmark = pytest.mark.netns

DEMO = "netns/demo.toml"
AFXDP_SW = "netns/afxdp-sw.toml"
H1, H2, H3 = "198.51.100.11", "198.51.100.12", "198.51.100.13"
H1_6, H2_6 = "2001:db8:10::11", "2001:db8:10::12"
TRANSFER_BYTES = 20 * 1000 * 1000
GONE_S = 5.0                     # how long the kernel may take to release a dead process's BPF link


def sh(*argv, check=True, **kwargs):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kwargs)


def xdp_attached(device):
    """Whether `ip -d link show` lists an XDP program on the root-namespace device."""
    return "xdp" in json.loads(sh("ip", "-d", "-j", "link", "show", device).stdout)[0]


def wait_detached(devices):
    deadline = time.monotonic() + GONE_S
    while any(xdp_attached(d) for d in devices) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [d for d in devices if xdp_attached(d)]


def ends(topo):
    return [f"psw-{topo.id}sw-h1", f"psw-{topo.id}sw-h2"]


# Through a running switch.

def test_ping_and_ports(topology):
    topo = topology(DEMO, switches=[AFXDP_SW])
    pairs = [("h1", H2), ("h2", H1), ("h1", H3), ("h3", H2)]
    failed = [(host, addr) for host, addr in pairs if not ping(topo, host, addr)]
    assert not failed, f"no answer for {failed}\n{topo.switch_log('afxdp')}"
    assert ping(topo, "h1", H2_6), "IPv6 through afxdp ports"
    ports = {row["name"]: row for row in topo.switch("afxdp").show("ports")}
    for name in ("p1", "p2"):
        assert ports[name]["type"] == "afxdp"
        assert ports[name]["xdp_mode"] == "native", "veth runs XDP in its driver"
        assert ports[name]["rx_packets"] > 0 and ports[name]["tx_packets"] > 0
    assert ports["p3"]["type"] == "tap" and "xdp_mode" not in ports["p3"]
    assert all(xdp_attached(d) for d in ends(topo))
    assert "XDP program attached to" in topo.switch_log("afxdp")
    table = sh(sys.executable, "-m", "pyswitch", "show", "ports", "--name", topo.switch("afxdp").name).stdout
    header, p1 = table.splitlines()[:2]
    assert "xdp_mode" in header.split() and "native" in p1.split(), table


@pytest.mark.parametrize("src, dst, address", [
    ("h1", "h2", H2),            # afxdp -> afxdp: partial checksums recognised, then completed
    ("h3", "h1", H1),            # TAP (TSO on) -> afxdp: GSO super-frames cut into segments
    ("h1", "h3", H3),            # afxdp -> TAP: a partial checksum handed on as NEEDS_CSUM
    ("h2", "h1", H1_6),          # IPv6
], ids=["afxdp-afxdp", "tap-afxdp", "afxdp-tap", "ipv6"])
def test_tcp_transfer_arrives_intact(topology, src, dst, address):
    topo = topology(DEMO, switches=[AFXDP_SW])
    (sent_n, sent_digest), received = transfer(topo, src, dst, address, TRANSFER_BYTES)
    assert int(sent_n) == TRANSFER_BYTES
    assert received == [sent_n, sent_digest]
    ports = {row["name"]: row for row in topo.switch("afxdp").show("ports")}
    out = {"h1": "p1", "h2": "p2", "h3": "p3"}[dst]
    assert ports[out]["tx_bytes"] >= TRANSFER_BYTES, ports[out]
    assert topo.switch("afxdp").show("stats")["parse_errors_total"] == 0


def test_trunk_between_two_switches(topology, tmp_path):
    """Tags leave in the frame's bytes (AF_XDP has no VLAN offload) and arrive in them on the other switch."""
    configs = []
    for name in ("netns/trunk-sw1.toml", "netns/trunk-sw2.toml"):
        path = tmp_path / name.split("/")[-1]
        path.write_text(open(name).read().replace('type = "afpacket"', 'type = "afxdp"'))
        configs.append(str(path))
    topo = topology("netns/trunk.toml", switches=configs)
    assert ping(topo, "h1", "198.51.100.12"), "VLAN 10 across the trunk"
    assert ping(topo, "h2", "198.51.100.22"), "VLAN 20 across the trunk"
    assert not ping(topo, "h1", "198.51.100.22", count=1), "VLAN 10 reached VLAN 20"
    up = {row["name"]: row for row in topo.switch("trunk1").show("ports")}["up"]
    assert up["type"] == "afxdp" and up["tx_packets"] > 0 and up["rx_packets"] > 0


def test_no_xdp_program_left_after_stop(topology):
    topo = topology(DEMO, switches=[AFXDP_SW])
    assert ping(topo, "h1", H2)
    assert all(xdp_attached(d) for d in ends(topo))
    tso = sh("ip", "netns", "exec", topo.netns("h1"), "ethtool", "-k", "eth0").stdout
    assert "tcp-segmentation-offload: off" in tso, "the kernel turns TSO off on an XDP veth's peer"
    assert topo.switch("afxdp").stop() == 0
    assert wait_detached(ends(topo)) == []
    tso = sh("ip", "netns", "exec", topo.netns("h1"), "ethtool", "-k", "eth0").stdout
    assert "tcp-segmentation-offload: on" in tso, "the peer's TSO comes back with the program gone"


def test_no_xdp_program_left_after_kill_9(topology):
    topo = topology(DEMO, switches=[AFXDP_SW])
    assert ping(topo, "h1", H2)
    assert all(xdp_attached(d) for d in ends(topo))
    topo.switch("afxdp").kill()
    assert wait_detached(ends(topo)) == [], "a SIGKILLed switch left its XDP program behind"
    tso = sh("ip", "netns", "exec", topo.netns("h1"), "ethtool", "-k", "eth0").stdout
    assert "tcp-segmentation-offload: on" in tso


def test_an_interface_with_a_program_is_refused(topology):
    """A second AF_XDP user of the same interface fails cleanly and the first goes on."""
    topo = topology(DEMO, switches=[AFXDP_SW])
    device = ends(topo)[0]
    dp = Datapath(max_flows=16)
    try:
        with pytest.raises(OSError) as info:
            dp.add_port(0, "afxdp", socket.if_nametoindex(device), 256, 1522)
        assert info.value.errno == 16, info.value        # EBUSY
        port = AfXdpPort(PortConfig(name="again", type="afxdp", device=device), 1, 256)
        port.open()
        with pytest.raises(PortError, match=r"^port again: cannot open .* already has an XDP program"):
            port.attach(dp)
    finally:
        dp.close()
    assert xdp_attached(device)
    assert ping(topo, "h1", H2)


def test_python_datapath_opens_afxdp_as_afpacket(topology):
    topo = topology(DEMO, switches=[AFXDP_SW], datapath="python")
    assert ping(topo, "h1", H2) and ping(topo, "h2", H3)
    ports = {row["name"]: row for row in topo.switch("afxdp").show("ports")}
    assert ports["p1"]["type"] == "afxdp" and ports["p1"]["xdp_mode"] is None
    assert not any(xdp_attached(d) for d in ends(topo))
    assert "opened as an afpacket port instead" in topo.switch_log("afxdp")


# Straight through the C datapath: memory port 0 <-> afxdp port 1 <-> veth <-> a namespace.

CAPTURE = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(2)
src = bytes.fromhex(sys.argv[2])
print("ready", flush=True)
while True:
    try:
        frame, addr = s.recvfrom(65536)
    except socket.timeout:
        break
    if addr[2] != socket.PACKET_OUTGOING and frame[6:12] == src:
        print(frame.hex(), flush=True)
"""
SWITCH_MAC, HOST_MAC, OTHER_MAC = "02:00:00:00:aa:01", "02:00:00:00:aa:02", "02:00:00:00:aa:03"
NS_ADDR, FAR_ADDR = "198.51.100.2", "198.51.100.1"


@pytest.fixture
def wire(netns_id):
    """A namespace with one veth end (its other end in the root namespace) and a datapath: port 0 memory,
    port 1 afxdp on the root end, flows 0 -> 1 and 1 -> 0."""
    ns, root, inside = f"psw-{netns_id}xn", f"psw-{netns_id}x0", f"psw-{netns_id}x1"
    dp = None
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", root, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "-n", ns, "link", "set", inside, "address", HOST_MAC, "up")
        sh("ip", "-n", ns, "addr", "add", f"{NS_ADDR}/24", "dev", inside)
        sh("ip", "-n", ns, "neigh", "replace", FAR_ADDR, "lladdr", OTHER_MAC, "dev", inside)
        sh("ip", "link", "set", root, "up")
        dp = Datapath(max_flows=16)
        dp.add_port(0, "memory")
        dp.add_port(1, "afxdp", socket.if_nametoindex(root), 256, 1522)
        mask = FlowKey.mask_of("in_port")
        dp.flow_put(FlowKey(in_port=0).pack(), mask, 1, [A.output(1)])
        dp.flow_put(FlowKey(in_port=1).pack(), mask, 1, [A.output(0)])
        yield dp, ns, inside
    finally:
        if dp is not None:
            dp.close()
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", root, check=False)


def send_through(wire, frame, vnet):
    """Injects (frame, vnet) on the memory port and returns the frames that arrive in the namespace."""
    dp, ns, inside = wire
    capture = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CAPTURE, inside,
                                OTHER_MAC.replace(":", "")], stdout=subprocess.PIPE, text=True)
    try:
        assert capture.stdout.readline().strip() == "ready"
        dp.inject(0, frame, vnet)
        dp.run()
        out, _ = capture.communicate(timeout=30)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    return [bytes.fromhex(line) for line in out.split()]


def vnet_hdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def fold(total):
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def word_sum(data):
    data = bytes(data) + b"\0" * (len(data) % 2)
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def with_partial_checksum(packet):
    """The frame as a sender with checksum offload leaves it, its TCP/UDP checksum field holding only the
    pseudo-header's sum: (frame, csum_start, csum_offset)."""
    raw = bytearray(bytes(packet))
    ip = packet[IP] if IP in packet else packet[IPv6]
    l4_size = len(bytes(ip.payload))
    start = len(raw) - l4_size
    if IP in packet:
        addresses = socket.inet_aton(ip.src) + socket.inet_aton(ip.dst)
    else:
        addresses = socket.inet_pton(socket.AF_INET6, ip.src) + socket.inet_pton(socket.AF_INET6, ip.dst)
    proto, offset = (6, 16) if TCP in packet else (17, 6)
    raw[start + offset:start + offset + 2] = struct.pack("!H", fold(word_sum(addresses) + proto + l4_size))
    return bytes(raw), start, offset


def complete(frame, start, offset):
    """What the kernel does with NEEDS_CSUM: the sum from csum_start on, seeded by the field, complemented."""
    raw = bytearray(frame)
    raw[start + offset:start + offset + 2] = struct.pack("!H", ~fold(word_sum(raw[start:])) & 0xFFFF)
    return bytes(raw)


def checksums_valid(frame):
    """Whether the IPv4 header checksum (if any) and the TCP/UDP checksum are what scapy computes."""
    packet = Ether(frame)
    ip = packet[IP] if IP in packet else packet[IPv6]
    got = (packet[IP].chksum if IP in packet else None, ip.payload.chksum)
    if IP in packet:
        del packet[IP].chksum
    del ip.payload.chksum
    again = Ether(bytes(packet))
    again_ip = again[IP] if IP in again else again[IPv6]
    return got == (again[IP].chksum if IP in again else None, again_ip.payload.chksum)


def test_partial_checksum_is_completed_on_the_way_out(wire):
    packet = (Ether(src=OTHER_MAC, dst=HOST_MAC) / IP(src=FAR_ADDR, dst=NS_ADDR)
              / UDP(sport=4000, dport=4001) / (b"u" * 300))
    frame, start, offset = with_partial_checksum(packet)
    assert not checksums_valid(frame)
    arrived = send_through(wire, frame, vnet_hdr(flags=1, csum_start=start, csum_offset=offset))
    assert len(arrived) == 1 and checksums_valid(arrived[0])
    assert Ether(arrived[0])[UDP].load == b"u" * 300


@pytest.mark.parametrize("family", ["tcp4", "tcp6", "udp4"])
def test_gso_frame_leaves_cut_into_segments(wire, family):
    payload = bytes(range(256)) * 40                                        # 10240 bytes
    if family == "tcp4":
        packet = (Ether(src=OTHER_MAC, dst=HOST_MAC) / IP(src=FAR_ADDR, dst=NS_ADDR, id=100, flags="DF")
                  / TCP(sport=4000, dport=4001, seq=1000, flags="PAF") / payload)
        l4, gso_type, mss = TCP, 1, 1448
    elif family == "tcp6":
        packet = (Ether(src=OTHER_MAC, dst=HOST_MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2")
                  / TCP(sport=4000, dport=4001, seq=1000, flags="PA") / payload)
        l4, gso_type, mss = TCP, 4, 1428
    else:
        packet = (Ether(src=OTHER_MAC, dst=HOST_MAC) / IP(src=FAR_ADDR, dst=NS_ADDR, id=100)
                  / UDP(sport=4000, dport=4001) / payload)
        l4, gso_type, mss = UDP, 5, 1400
    frame, start, offset = with_partial_checksum(packet)
    hdr_len = start + (20 if l4 is TCP else 8)
    arrived = send_through(wire, frame, vnet_hdr(1, gso_type, hdr_len, mss, start, offset))
    expected = -(-len(payload) // mss)
    assert len(arrived) == expected, [len(f) for f in arrived]
    assert all(checksums_valid(f) for f in arrived)
    segments = [Ether(f) for f in arrived]
    assert b"".join(bytes(s[l4].payload) for s in segments) == payload
    assert all(len(bytes(s[l4].payload)) == mss for s in segments[:-1])
    if l4 is TCP:
        assert [s[TCP].seq for s in segments] == [1000 + k * mss for k in range(expected)]
        assert all("P" not in str(s[TCP].flags) and "F" not in str(s[TCP].flags) for s in segments[:-1])
        assert "P" in str(segments[-1][TCP].flags)
    if IP in packet:
        assert [s[IP].id for s in segments] == [100 + k for k in range(expected)]
        assert all(s[IP].len == len(bytes(s[IP])) for s in segments)


def test_received_partial_checksum_is_marked(wire):
    """A host's UDP with checksum offload arrives with the pseudo-header sum in the field; the datapath says
    NEEDS_CSUM (as PACKET_VNET_HDR would), and completing it gives the right checksum."""
    dp, ns, inside = wire
    sh("ip", "netns", "exec", ns, sys.executable, "-c",
       f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x' * 200, ('{FAR_ADDR}', 53))")
    frames = []
    for _ in range(20):
        dp.poll(50)
        frames += [(f, v) for f, v in dp.take(0) if UDP in Ether(f) and Ether(f)[UDP].dport == 53]
        if frames:
            break
    assert len(frames) == 1
    frame, vnet = frames[0]
    flags, _gso, _hl, _gs, csum_start, csum_offset = struct.unpack("<BBHHHH", vnet)
    assert (flags, csum_start, csum_offset) == (1, 34, 6)
    assert not checksums_valid(frame)
    assert checksums_valid(complete(frame, csum_start, csum_offset))


class TwoHosts:
    """Namespaces a and b, each with a veth whose root-namespace end is an afxdp port of an in-process datapath
    (a: port 0, b: port 1) that forwards between them in a thread; everything removed on exit."""

    def __init__(self, id, mtu=1500, queues=1):
        self.hosts = {"a": (f"psw-{id}qa", f"psw-{id}q0", f"psw-{id}q1", "198.51.100.1/24"),
                      "b": (f"psw-{id}qb", f"psw-{id}q2", f"psw-{id}q3", "198.51.100.2/24")}
        self.mtu, self.queues = mtu, queues
        self.dp = None
        self.stop = threading.Event()
        self.thread = None

    def __enter__(self):
        try:
            for ns, root, inside, address in self.hosts.values():
                sh("ip", "netns", "add", ns)
                sh("ip", "link", "add", root, "mtu", str(self.mtu), "numrxqueues", str(self.queues), "numtxqueues",
                   str(self.queues), "type", "veth", "peer", "name", inside, "mtu", str(self.mtu),
                   "numrxqueues", str(self.queues), "numtxqueues", str(self.queues))
                if self.queues > 1:
                    sh("ethtool", "-L", root, "rx", str(self.queues), "tx", str(self.queues))
                    sh("ethtool", "-L", inside, "rx", str(self.queues), "tx", str(self.queues))
                sh("ip", "link", "set", inside, "netns", ns)
                sh("ip", "-n", ns, "addr", "add", address, "dev", inside)
                sh("ip", "-n", ns, "link", "set", inside, "up")
                sh("ip", "link", "set", root, "up")
            self.dp = Datapath(max_flows=16)
            for port_no, (_ns, root, _inside, _address) in enumerate(self.hosts.values()):
                self.dp.add_port(port_no, "afxdp", socket.if_nametoindex(root), 256, self.mtu + 22)
            mask = FlowKey.mask_of("in_port")
            self.dp.flow_put(FlowKey(in_port=0).pack(), mask, 1, [A.output(1)])
            self.dp.flow_put(FlowKey(in_port=1).pack(), mask, 1, [A.output(0)])
            self.thread = threading.Thread(target=lambda: [self.dp.poll(50) for _ in iter(self.stop.is_set, True)],
                                           daemon=True)
            self.thread.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(5)
        if self.dp is not None:
            self.dp.close()
        for ns, root, _inside, _address in self.hosts.values():
            sh("ip", "netns", "del", ns, check=False)
            sh("ip", "link", "del", root, check=False)

    def netns(self, host):
        return self.hosts[host][0]

    def inside(self, host):
        return self.hosts[host][2]

    def root_end(self, host):
        return self.hosts[host][1]

    def connections(self, count, each, timeout=60):
        """`count` TCP connections a -> b sending `each` bytes apiece; returns the bytes b received (None if the
        client failed)."""
        server = subprocess.Popen(["ip", "netns", "exec", self.netns("b"), sys.executable, "-c", MANY_SERVER,
                                   str(count)], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "ready"
            client = subprocess.run(["ip", "netns", "exec", self.netns("a"), sys.executable, "-c", MANY_CLIENT,
                                     str(count), str(each)], capture_output=True, text=True, timeout=timeout)
            if client.returncode != 0:
                return None
            return int(server.stdout.readline())
        except subprocess.TimeoutExpired:
            return None
        finally:
            server.kill()
            server.wait()


def test_two_receive_queues(netns_id):
    """Frames arrive on both queues of a two-queue veth; every connection's bytes get through."""
    with TwoHosts(netns_id, queues=2) as net:
        assert net.connections(8, 1 << 20) == 8 << 20
        redirected = [int(line.split(":")[1]) for line in sh("ethtool", "-S", net.root_end("a")).stdout.splitlines()
                      if "xdp_redirect" in line]
        assert len(redirected) == 2 and all(n > 0 for n in redirected), redirected


def test_generic_mode_when_the_driver_cannot(netns_id):
    """veth runs XDP natively only up to an MTU of about 3500 (without multi-buffer support); above, the port
    falls back to generic mode and works, for frames that fit a chunk.  A peer that keeps TSO in generic mode
    sends super-frames that do not, and they are counted in rx_dropped."""
    with TwoHosts(netns_id, mtu=3600) as net:
        assert [net.dp.port_xdp_mode(p) for p in (0, 1)] == ["generic", "generic"]
        assert sh("ip", "netns", "exec", net.netns("a"), "ping", "-c", "2", "-i", "0.2", "-s", "3000", "-W", "2",
                  "198.51.100.2", check=False).returncode == 0
        assert net.connections(1, 1 << 20, timeout=5) is None, "super-frames cannot fit a chunk"
        assert net.dp.port_stats(0)["rx_dropped"] > 0
        sh("ip", "netns", "exec", net.netns("a"), "ethtool", "-K", net.inside("a"), "tso", "off")
        assert net.connections(1, 4 << 20) == 4 << 20


MANY_SERVER = """
import socket, sys, threading
count = int(sys.argv[1])
srv = socket.create_server(("198.51.100.2", 5001), backlog=count)
print("ready", flush=True)
total = 0; lock = threading.Lock()
def serve(c):
    global total
    n = 0
    while d := c.recv(1 << 16):
        n += len(d)
    with lock:
        total += n
threads = []
for _ in range(count):
    c, _ = srv.accept(); t = threading.Thread(target=serve, args=(c,)); t.start(); threads.append(t)
for t in threads:
    t.join()
print(total, flush=True)
"""
MANY_CLIENT = """
import socket, sys
count, each = int(sys.argv[1]), int(sys.argv[2])
conns = [socket.create_connection(("198.51.100.2", 5001), timeout=20) for _ in range(count)]
block = bytes(range(256)) * 256
for c in conns:
    sent = 0
    while sent < each:
        c.sendall(block[:each - sent]); sent += min(len(block), each - sent)
for c in conns:
    c.close()
"""
