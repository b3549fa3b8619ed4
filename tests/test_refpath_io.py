"""The twin's AF_PACKET port on a real veth pair inside a throwaway namespace (psw-py-*, always deleted)."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.netns

# Runs inside the namespace: a peer raw socket on one veth end, the datapath's afpacket port on the other.
# veth strips VLAN tags on receive (rxvlan offload), so the tagged frame also checks the tag restore.
SCRIPT = textwrap.dedent("""
    import socket, time
    from pyswitch import actions as A
    from pyswitch.flowkey import FlowKey
    from pyswitch.refpath import Datapath, parse
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether

    eth = Ether(src="02:00:00:00:00:0b", dst="02:00:00:00:00:0a")
    plain = bytes(eth / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=1, dport=2) / b"hello")
    tagged = bytes(eth / Dot1Q(vlan=42, prio=3) / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=1, dport=2))
    dp = Datapath()
    dp.add_port(0, "afpacket", socket.if_nametoindex("pswa0"))
    dp.add_port(1, "memory")
    peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    peer.bind(("pswb0", 0))
    peer.settimeout(2)
    peer.send(plain)
    peer.send(tagged)
    seen = []
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        dp.poll(200, now_ms=0)
        seen += [u.data for u in dp.upcalls() if u.data in (plain, tagged)]
    assert seen == [plain, tagged], seen
    dp.flow_put(parse(plain, 1).key, FlowKey.mask_of("in_port"), 0, [A.output(0)], now_ms=0)
    dp.inject(1, plain)
    dp.run(now_ms=0)
    got = []
    while plain not in got:
        got.append(peer.recv(2048))
    stats = dp.port_stats(0)
    assert stats["tx_packets"] == 1 and stats["tx_bytes"] == len(plain), stats
    assert stats["rx_packets"] >= 2 and stats["rx_errors"] == 0, stats
    dp.close()
    print("ok")
""")


def test_afpacket_port_receives_restores_tags_and_sends():
    ns = f"psw-py-io{os.getpid()}"
    ip = ["ip", "-n", ns]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(ip + ["link", "add", "pswa0", "type", "veth", "peer", "name", "pswb0"], check=True)
        for dev in ("pswa0", "pswb0"):
            subprocess.run(ip + ["link", "set", dev, "up"], check=True)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT], cwd=root,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
