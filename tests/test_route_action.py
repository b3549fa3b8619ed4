"""The ROUTE action through whole datapaths with memory ports, C and twin alike (docs/DATAPATH.md "Routing").

Each case says what goes in and the exact bytes that must come out; checksums are compared with a full
recomputation by scapy, so the incremental update is checked against an independent implementation.
"""
import errno
import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from pyswitch import actions as A, consts, fastpath, refpath
from pyswitch.flowkey import FlowKey

HOST_MAC = "02:00:00:00:00:01"
GW_MAC = b"\x02\x00\x00\x00\xff\x01"        # the switch on every VLAN
NEIGH_MAC = b"\x02\x00\x00\x00\x00\x99"
NEXT_ROUTER_MAC = b"\x02\x00\x00\x00\x00\x77"
ALL_MASK = bytes(64)
NH_LAN, NH_VIA, NH_LOCAL, NH_HOLE, NH_UNSET = 1, 2, 3, 4, 5


def ip(text):
    return ipaddress.IPv4Address(text).packed


@pytest.fixture(params=["c", "python"])
def dp(request):
    d = (fastpath if request.param == "c" else refpath).Datapath(max_upcalls=16)
    for p in range(4):
        d.add_port(p, "memory")
    # 198.51.100.0/24 is on VLAN 20 (port 2, tagged 20); 203.0.113.0/24 is behind a router on VLAN 30 (port 3,
    # untagged); 192.0.2.1 is the switch; 192.0.2.128/25 is a blackhole; 192.0.2.64/26 has an unset next hop.
    d.nexthop_set(NH_LAN, consts.NH_CONNECTED, 20, src_mac=GW_MAC)
    d.nexthop_set(NH_VIA, "gateway", 30, gateway=ip("192.0.2.254"), src_mac=GW_MAC)
    d.nexthop_set(NH_LOCAL, consts.NH_LOCAL, 10)
    d.nexthop_set(NH_HOLE, "blackhole", 0)
    d.route_add(ip("198.51.100.0"), 24, NH_LAN)
    d.route_add(ip("203.0.113.0"), 24, NH_VIA)
    d.route_add(ip("192.0.2.1"), 32, NH_LOCAL)
    d.route_add(ip("192.0.2.128"), 25, NH_HOLE)
    d.route_add(ip("192.0.2.64"), 26, NH_UNSET)
    d.neigh_set(20, ip("198.51.100.7"), NEIGH_MAC, 2, out_tci=20)
    d.neigh_set(30, ip("192.0.2.254"), NEXT_ROUTER_MAC, 3)
    d.flow_put(bytes(64), ALL_MASK, 0, [A.route()], now_ms=0)
    yield d
    d.close()


def packet(dst="198.51.100.7", src="192.0.2.50", ttl=64, tags=(10,), l4=None, **ip_fields):
    eth = Ether(src=HOST_MAC, dst=GW_MAC)
    for vid in tags:
        eth = eth / Dot1Q(vlan=vid)
    return eth / IP(src=src, dst=dst, ttl=ttl, **ip_fields) / (l4 if l4 is not None else UDP(sport=5, dport=53) / b"x")


def send(dp, frame, port=1):
    dp.inject(port, bytes(frame))
    dp.run(now_ms=1)
    return {p: [f for f, _v in dp.take(p)] for p in range(4)}


def only_output(outputs, port):
    assert {p: len(v) for p, v in outputs.items()} == {p: int(p == port) for p in range(4)}
    return outputs[port][0]


def expected_routed(pkt, dst_mac, out_tags=()):
    """The frame a router makes of `pkt`: new MACs, the given tags, TTL - 1, checksum recomputed by scapy."""
    inner = pkt[IP].copy()
    inner.ttl -= 1
    del inner.chksum
    eth = Ether(src=GW_MAC, dst=dst_mac)
    for vid in out_tags:
        eth = eth / Dot1Q(vlan=vid)
    return bytes(eth / IP(bytes(inner)))


def test_connected_route_rewrites_macs_ttl_checksum_and_retags(dp):
    pkt = packet()
    out = only_output(send(dp, pkt), 2)
    assert out == expected_routed(pkt, NEIGH_MAC, out_tags=(20,))
    assert IP(bytes(Ether(out)[IP])).ttl == 63
    s = dp.stats()
    assert (s["routed"], s["route_dropped"], s["martian"], s["upcalls"]) == (1, 0, 0, 0)


def test_checksum_valid_after_routing_every_ttl(dp):
    for ttl in (2, 3, 128, 255):
        for tos in (0, 0xB8):
            pkt = packet(ttl=ttl, tos=tos, id=ttl * 7)
            out = only_output(send(dp, pkt), 2)
            got = Ether(out)[IP]
            assert got.ttl == ttl - 1
            recomputed = IP(bytes(got))
            del recomputed.chksum
            assert got.chksum == IP(bytes(recomputed)).chksum


def test_gateway_route_goes_to_the_gateways_mac_untagged(dp):
    pkt = packet(dst="203.0.113.9", tags=())
    assert only_output(send(dp, pkt), 3) == expected_routed(pkt, NEXT_ROUTER_MAC)


def test_double_tagged_frame_loses_both_tags(dp):
    pkt = Ether(src=HOST_MAC, dst=GW_MAC) / Dot1AD(vlan=100) / Dot1Q(vlan=10) / IP(src="192.0.2.50",
                                                                              dst="203.0.113.9") / TCP()
    assert only_output(send(dp, pkt), 3) == expected_routed(pkt, NEXT_ROUTER_MAC)


def test_hairpin_back_out_of_the_input_port(dp):
    """Routing between two VLANs of one trunk: the frame leaves by the port it came in on, with the other tag."""
    pkt = packet(tags=(10,))
    assert only_output(send(dp, pkt, port=2), 2) == expected_routed(pkt, NEIGH_MAC, out_tags=(20,))


def test_options_and_fragments_are_routed(dp):
    for pkt in (packet(options=b"\x94\x04\x00\x00"),                                 # router alert
                packet(options=b"\x01" * 8, l4=TCP(dport=80, flags="S")),
                packet(flags="MF", frag=0, l4=Raw(b"A" * 64)),
                packet(frag=100, proto=17, l4=Raw(b"B" * 24))):
        pkt = Ether(bytes(pkt))
        assert only_output(send(dp, pkt), 2) == expected_routed(pkt, NEIGH_MAC, out_tags=(20,))
    assert dp.stats()["routed"] == 4


def test_vnet_offsets_follow_the_tags(dp):
    """POP and PUSH inside ROUTE move csum_start like the POP_VLAN/PUSH_VLAN actions."""
    pkt = bytes(packet(dst="203.0.113.9", tags=(10, 11)))
    vnet = bytes([1, 0]) + (0).to_bytes(2, "little") * 2 + (42).to_bytes(2, "little") + (6).to_bytes(2, "little")
    dp.inject(1, pkt, vnet)
    dp.run(now_ms=1)
    ((_frame, out_vnet),) = dp.take(3)
    assert int.from_bytes(out_vnet[6:8], "little") == 42 - 8


def test_actions_after_route_run_on_the_routed_frame(dp):
    dp.flow_put(bytes(64), ALL_MASK, 0, [A.output(0), A.route(), A.output(1)], now_ms=0)
    pkt = packet()
    out = send(dp, pkt)
    assert out[0] == [bytes(pkt)]
    assert out[2] == out[1] == [expected_routed(pkt, NEIGH_MAC, out_tags=(20,))]


def upcall_of(dp, pkt, port=1):
    dp.flow_put(bytes(64), ALL_MASK, 0, [A.route(), A.output(0)], now_ms=0)
    outputs = send(dp, pkt, port)
    assert outputs == {p: [] for p in range(4)}, "no output: the actions after the ROUTE must not run"
    (up,) = dp.upcalls()
    assert up.data == bytes(pkt) and up.in_port == port
    assert up.key == refpath.parse(bytes(pkt), port).key
    return up


@pytest.mark.parametrize("dst, reason, userdata", [
    ("10.0.0.1", consts.UPCALL_NO_ROUTE, 0),                 # no route at all
    ("192.0.2.70", consts.UPCALL_NO_ROUTE, 0),               # a route to a next hop that is not set
    ("192.0.2.1", consts.UPCALL_LOCAL, 0),
    ("198.51.100.8", consts.UPCALL_NO_NEIGH, NH_LAN),        # connected: the destination is not resolved
])
def test_upcall_reasons(dp, dst, reason, userdata):
    up = upcall_of(dp, packet(dst=dst))
    assert (up.reason, up.userdata) == (reason, userdata)
    assert dp.stats()["routed"] == 0 and dp.stats()["route_dropped"] == 0


def test_unresolved_gateway_upcalls_with_its_next_hop(dp):
    assert dp.neigh_del(30, ip("192.0.2.254")) is True
    up = upcall_of(dp, packet(dst="203.0.113.9"))
    assert (up.reason, up.userdata) == (consts.UPCALL_NO_NEIGH, NH_VIA)


@pytest.mark.parametrize("ttl", [0, 1])
def test_expiring_ttl_upcalls_unchanged(dp, ttl):
    up = upcall_of(dp, packet(ttl=ttl))
    assert (up.reason, up.userdata) == (consts.UPCALL_TTL, 0)


def test_local_wins_over_ttl(dp):
    """A packet for the switch itself is delivered whatever its TTL (step 3 comes before step 4)."""
    up = upcall_of(dp, packet(dst="192.0.2.1", ttl=1))
    assert up.reason == consts.UPCALL_LOCAL


@pytest.mark.parametrize("src", ["0.1.2.3", "127.0.0.1", "224.0.0.5", "240.0.0.1", "255.255.255.255"])
def test_martian_sources_are_dropped_and_counted(dp, src):
    assert send(dp, packet(src=src)) == {p: [] for p in range(4)}
    s = dp.stats()
    assert (s["martian"], s["route_dropped"], s["routed"], s["upcalls"]) == (1, 1, 0, 0)


@pytest.mark.parametrize("dst", ["224.0.0.1", "239.255.255.250", "255.255.255.255"])
def test_multicast_and_broadcast_destinations_are_dropped(dp, dst):
    assert send(dp, packet(dst=dst)) == {p: [] for p in range(4)}
    s = dp.stats()
    assert (s["martian"], s["route_dropped"], s["upcalls"]) == (0, 1, 0)


def test_blackhole_drops(dp):
    assert send(dp, packet(dst="192.0.2.200")) == {p: [] for p in range(4)}
    assert (dp.stats()["route_dropped"], dp.stats()["upcalls"]) == (1, 0)


@pytest.mark.parametrize("frame", [
    Ether(src=HOST_MAC, dst=GW_MAC) / ARP(psrc="192.0.2.50", pdst="192.0.2.1"),
    Ether(src=HOST_MAC, dst=GW_MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(),
    Ether(src=HOST_MAC, dst=GW_MAC) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(dst="198.51.100.7"),
])
def test_non_ipv4_is_dropped(dp, frame):
    if Dot1Q in frame and frame[Dot1Q].payload.__class__ is Dot1Q:
        # Three tags do not parse; route it through execute(), which takes any frame.
        dp.execute(1, bytes(frame), bytes(10), [A.route(), A.output(0)])
        outputs = {p: dp.take(p) for p in range(4)}
    else:
        outputs = send(dp, frame)
    assert all(not v for v in outputs.values())
    assert dp.stats()["route_dropped"] == 1


def test_execute_routes_with_the_datapath_tables(dp):
    pkt = packet(dst="203.0.113.9")
    dp.execute(0, bytes(pkt), bytes(10), [A.route()])
    assert [f for f, _v in dp.take(3)] == [expected_routed(pkt, NEXT_ROUTER_MAC)]


def test_neighbor_on_a_missing_port_counts_bad_port(dp):
    dp.neigh_set(20, ip("198.51.100.9"), NEIGH_MAC, 5)
    assert send(dp, packet(dst="198.51.100.9")) == {p: [] for p in range(4)}
    assert (dp.stats()["routed"], dp.stats()["bad_port"]) == (1, 1)


def test_table_edits_take_effect(dp):
    assert dp.route_lookup(ip("198.51.100.7")) == NH_LAN
    assert dp.route_del(ip("198.51.100.0"), 24) is True and dp.route_del(ip("198.51.100.0"), 24) is False
    assert dp.route_lookup(ip("198.51.100.7")) == 0
    dp.route_add(ip("0.0.0.0"), 0, NH_VIA)
    only_output(send(dp, packet(dst="198.51.100.7")), 3)
    assert dp.nexthop_del(NH_VIA) is True and dp.nexthop_del(NH_VIA) is False
    assert upcall_of(dp, packet(dst="198.51.100.7")).reason == consts.UPCALL_NO_ROUTE


def test_neighbor_table_api(dp):
    assert dp.neigh_get(20, ip("198.51.100.7")) == (NEIGH_MAC, 2, 20)
    assert dp.neigh_get(20, ip("198.51.100.7").ljust(16, b"\0")) == (NEIGH_MAC, 2, 20)
    assert dp.neigh_get(21, ip("198.51.100.7")) is None
    dp.neigh_set(20, ip("198.51.100.7"), NEXT_ROUTER_MAC, 1)
    assert dp.neigh_get(20, ip("198.51.100.7")) == (NEXT_ROUTER_MAC, 1, 0)
    assert dp.neigh_del(20, ip("198.51.100.7")) is True
    assert dp.neigh_get(20, ip("198.51.100.7")) is None
    for bad in (dict(vlan=4096), dict(port=64)):
        args = dict(vlan=20, addr=ip("198.51.100.1"), mac=NEIGH_MAC, port=1) | bad
        with pytest.raises(ValueError):
            dp.neigh_set(**args)


def test_bad_arguments_are_value_errors(dp):
    with pytest.raises(ValueError):
        dp.route_add(ip("192.0.2.0"), 33, 1)
    with pytest.raises(ValueError):
        dp.route_add(ip("192.0.2.0"), 24, 0)
    for args in ((0, consts.NH_CONNECTED, 1), (4096, consts.NH_CONNECTED, 1), (1, 9, 1), (1, "nope", 1),
                 (1, consts.NH_CONNECTED, 4096)):
        with pytest.raises(ValueError):
            dp.nexthop_set(*args)


def test_neighbor_table_is_bounded(dp):
    for i in range(consts.MAX_NEIGHS - 2):
        dp.neigh_set(1, i.to_bytes(4, "big"), NEIGH_MAC, 1)
    with pytest.raises(OSError) as exc:
        dp.neigh_set(1, b"\xff\xff\xff\xff", NEIGH_MAC, 1)
    assert exc.value.errno == errno.ENOSPC
    dp.neigh_set(1, (5).to_bytes(4, "big"), NEIGH_MAC, 2)        # an update needs no room
    assert dp.neigh_del(1, (5).to_bytes(4, "big"))
    dp.neigh_set(1, b"\xff\xff\xff\xff", NEIGH_MAC, 1)


def test_actions_apply_turns_route_into_an_upcall_output():
    pkt = bytes(packet())
    for impl in (fastpath, refpath):
        outs = impl.actions_apply(pkt, bytes(10), 1, [A.output(2), A.route(), A.output(3)])
        assert [(o.port, o.frame, o.userdata) for o in outs] == [(2, pkt, 0), (consts.UPCALL_PORT, pkt, 0)]
