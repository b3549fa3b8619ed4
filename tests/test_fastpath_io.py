"""Real I/O: two namespaces joined through the C datapath's AF_PACKET ports (ping, then a bulk TCP transfer).

    psw-c-a: psw-c-a1 198.51.100.1/24 --veth-- psw-c-a0 (root, port 0)
    psw-c-b: psw-c-b1 198.51.100.2/24 --veth-- psw-c-b0 (root, port 1)

Offloads stay on, so the kernel hands the datapath GSO super-frames with a vnet header and they must get
through intact.
"""
import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

from pyswitch import actions as A
from pyswitch.fastpath import Datapath
from pyswitch.flowkey import FlowKey

NAMESPACES = {"psw-c-a": ("psw-c-a0", "psw-c-a1", "198.51.100.1/24"),
              "psw-c-b": ("psw-c-b0", "psw-c-b1", "198.51.100.2/24")}
TRANSFER_BYTES = 8 * 1024 * 1024


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


TAP_NS = "psw-c-t"
TAP_NAME = "psw-c-t0"
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04


def _cleanup():
    for ns, (root_end, _, _) in NAMESPACES.items():
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", root_end, check=False)
    sh("ip", "netns", "del", TAP_NS, check=False)
    sh("ip", "link", "del", TAP_NAME, check=False)


@pytest.fixture
def two_hosts(request):
    _cleanup()
    request.addfinalizer(_cleanup)
    for ns, (root_end, ns_end, addr) in NAMESPACES.items():
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", root_end, "type", "veth", "peer", "name", ns_end)
        sh("ip", "link", "set", ns_end, "netns", ns)
        sh("ip", "link", "set", root_end, "up")
        sh("ip", "-n", ns, "addr", "add", addr, "dev", ns_end)
        sh("ip", "-n", ns, "link", "set", ns_end, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    return {ns: socket.if_nametoindex(root_end) for ns, (root_end, _, _) in NAMESPACES.items()}


@pytest.fixture
def switch(two_hosts):
    dp = Datapath(max_flows=64)
    dp.add_port(0, "afpacket", two_hosts["psw-c-a"])
    dp.add_port(1, "afpacket", two_hosts["psw-c-b"])
    mask = FlowKey.mask_of("in_port")
    dp.flow_put(FlowKey(in_port=0).pack(), mask, 1, [A.output(1)])
    dp.flow_put(FlowKey(in_port=1).pack(), mask, 1, [A.output(0)])
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            dp.poll(50)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield dp
    stop.set()
    thread.join(5)
    dp.close()


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.51.100.2", 5001)); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    d = c.recv(1 << 20)
    if not d: break
    n += len(d)
c.sendall(str(n).encode()); c.close()
"""

CLIENT = """
import socket, sys
n = int(sys.argv[1])
c = socket.create_connection(("198.51.100.2", 5001), timeout=20)
block = bytes(range(256)) * 256
sent = 0
while sent < n:
    c.sendall(block[: n - sent]); sent += min(len(block), n - sent)
c.shutdown(socket.SHUT_WR)
print(c.recv(64).decode())
"""


@pytest.mark.netns
def test_ping_and_tcp_through_afpacket(switch):
    ping = sh("ip", "netns", "exec", "psw-c-a", "ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.2",
              check=False, timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    server = subprocess.Popen(["ip", "netns", "exec", "psw-c-b", sys.executable, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        client = sh("ip", "netns", "exec", "psw-c-a", sys.executable, "-c", CLIENT, str(TRANSFER_BYTES),
                    check=False, timeout=60)
        assert client.returncode == 0, client.stderr
        assert int(client.stdout.strip()) == TRANSFER_BYTES
    finally:
        server.kill()
        server.wait()

    a, b = switch.port_stats(0), switch.port_stats(1)
    assert a["rx_errors"] == 0 and a["tx_dropped"] == 0 and b["tx_dropped"] == 0
    assert a["rx_packets"] > 0 and b["tx_packets"] == a["rx_packets"]
    # GSO super-frames: far fewer frames than 1514-byte segments would need.
    assert a["rx_bytes"] / a["rx_packets"] > 1514, a
    stats = switch.stats()
    assert stats["bad_port"] == 0 and sum(stats["parse_errors"].values()) == 0


@pytest.mark.netns
def test_tap_port_to_afpacket_port(two_hosts):
    """A TAP (opened here, as the Python side does) moved into psw-c-t, switched to psw-c-b's veth."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", TAP_NAME.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        sh("ip", "netns", "add", TAP_NS)
        sh("ip", "link", "set", TAP_NAME, "netns", TAP_NS)
        sh("ip", "-n", TAP_NS, "addr", "add", "198.51.100.3/24", "dev", TAP_NAME)
        sh("ip", "-n", TAP_NS, "link", "set", TAP_NAME, "up")
        dp = Datapath(max_flows=64)
        dp.add_port(0, "tap", fd)
        dp.add_port(1, "afpacket", two_hosts["psw-c-b"])
        mask = FlowKey.mask_of("in_port")
        dp.flow_put(FlowKey(in_port=0).pack(), mask, 1, [A.output(1)])
        dp.flow_put(FlowKey(in_port=1).pack(), mask, 1, [A.output(0)])
        stop = threading.Event()
        thread = threading.Thread(target=lambda: [dp.poll(50) for _ in iter(stop.is_set, True)], daemon=True)
        thread.start()
        try:
            ping = sh("ip", "netns", "exec", TAP_NS, "ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.2",
                      check=False, timeout=30)
            assert ping.returncode == 0, ping.stdout + ping.stderr
        finally:
            stop.set()
            thread.join(5)
            dp.close()
        assert os.fstat(fd)                                 # the datapath never closes a TAP fd
    finally:
        os.close(fd)
