"""IPIP and GRE: encapsulation by LB's tunnel modes, the DECAP action (docs/DATAPATH.md "Tunnels").

DECAP runs four ways (actions_apply of C and twin, whole datapaths of C and twin); encapsulation happens only inside
LB, so it is checked through datapaths with a connection table. Headers are built and read back with scapy.
"""
import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, GRE, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from pyswitch import actions as A, consts, fastpath, refpath
from pyswitch.datapath_types import Conn, ConnTuple

CLIENT, VIP, BACKEND, SWITCH = "192.0.2.10", "198.51.100.1", "203.0.113.5", "203.0.113.1"
GW_MAC = b"\x02\x00\x00\x00\xff\x01"
BACKEND_MAC = b"\x02\x00\x00\x00\x00\x05"
OUT = 2                                     # the port DECAP's output goes to
VNET_NONE = bytes(10)


def ip(text):
    return ipaddress.IPv4Address(text).packed


def vnet_hdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def inner_packet(l4="tcp", **ip_fields):
    layer = TCP(sport=40000, dport=80, flags="PA") if l4 == "tcp" else UDP(sport=40000, dport=53)
    return IP(bytes(IP(src=CLIENT, dst=VIP, ttl=50, **ip_fields) / layer / b"the inner payload"))


def tunnel_frame(inner, gre=None, tags=(), outer_fields=None):
    """Ether [/ tags] / IP(SWITCH -> BACKEND) / [GRE] / inner, as a tunnel endpoint would build it."""
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:ff:01")
    for i, vid in enumerate(tags):
        eth = eth / (Dot1AD(vlan=vid) if i == 0 and len(tags) == 2 else Dot1Q(vlan=vid))
    outer = IP(src=SWITCH, dst=BACKEND, proto=4 if gre is None else 47, **(outer_fields or {}))
    body = bytes(inner) if gre is None else bytes(gre / bytes(inner))
    return bytes(eth / outer / Raw(body))


def decapped(frame, inner):
    """What DECAP makes of `frame`: its Ethernet header (with tags) in front of `inner`, nothing else changed."""
    l3 = refpath.parse(frame, 0).l3_ofs
    return frame[:l3] + bytes(inner)


# -- the four ways to run DECAP -------------------------------------------------------------------------------------

class ApplyRunner:
    def __init__(self, impl):
        self.impl = impl

    def run(self, frame, vnet, actions):
        """([(frame, vnet) to OUT], decap_errors or None when there are no counters)."""
        outs = self.impl.actions_apply(bytes(frame), vnet, 0, actions)
        assert all(o.port == OUT for o in outs)
        return [(o.frame, o.vnet) for o in outs], None

    def close(self):
        pass


class DatapathRunner:
    def __init__(self, impl):
        self.dp = impl.Datapath(max_flows=16, emc_entries=16, max_upcalls=16)
        for p in range(4):
            self.dp.add_port(p, "memory")

    def run(self, frame, vnet, actions):
        if refpath.parse(bytes(frame), 0).error == consts.PE_OK:
            self.dp.flow_put(bytes(64), bytes(64), 0, actions, now_ms=0)
            self.dp.inject(0, bytes(frame), vnet)
            self.dp.run(now_ms=1)
        else:
            self.dp.execute(0, bytes(frame), vnet, actions, now_ms=1)
        assert all(not self.dp.take(p) for p in (0, 1, 3))
        return self.dp.take(OUT), self.dp.stats()["decap_errors"]

    def close(self):
        self.dp.close()


RUNNERS = {"c-apply": lambda: ApplyRunner(fastpath), "py-apply": lambda: ApplyRunner(refpath),
           "c-dp": lambda: DatapathRunner(fastpath), "py-dp": lambda: DatapathRunner(refpath)}


@pytest.fixture(params=list(RUNNERS))
def runner(request):
    r = RUNNERS[request.param]()
    yield r
    r.close()


def decap_one(runner, frame, vnet=VNET_NONE):
    outs, errors = runner.run(frame, vnet, [A.decap(), A.output(OUT)])
    assert len(outs) == 1 and errors in (0, None)
    return outs[0]


# -- DECAP ----------------------------------------------------------------------------------------------------------

GRE_VARIANTS = {
    "plain": GRE(proto=0x0800),
    "key": GRE(key_present=1, key=0x01020304, proto=0x0800),
    "seq": GRE(seqnum_present=1, sequence_number=77, proto=0x0800),
    "csum": GRE(chksum_present=1, proto=0x0800),
    "csum-key-seq": GRE(chksum_present=1, key_present=1, key=9, seqnum_present=1, sequence_number=1, proto=0x0800),
    "recursion-bits": GRE(recursion_control=3, proto=0x0800),
}


@pytest.mark.parametrize("gre", [None] + list(GRE_VARIANTS), ids=lambda g: g or "ipip")
@pytest.mark.parametrize("tags", [(), (10,), (100, 10)], ids=["untagged", "vlan", "qinq"])
def test_decap_leaves_the_inner_packet(runner, gre, tags):
    inner = inner_packet()
    frame = tunnel_frame(inner, GRE_VARIANTS.get(gre), tags)
    assert decap_one(runner, frame) == (decapped(frame, inner), VNET_NONE)


def test_decap_outer_options_and_padding(runner):
    inner = inner_packet("udp")
    frame = tunnel_frame(inner, outer_fields=dict(options=b"\x94\x04\x00\x00")) + bytes(6)
    assert decap_one(runner, frame)[0] == decapped(frame, inner) + bytes(6)


@pytest.mark.parametrize("gre, removed", [(None, 20), ("plain", 24), ("csum-key-seq", 36)])
def test_decap_moves_vnet_offsets(runner, gre, removed):
    inner = inner_packet()
    frame = tunnel_frame(inner, GRE_VARIANTS.get(gre))
    l4 = 14 + removed + 20
    vnet = vnet_hdr(1, 1, l4 + 32, 1400, l4, 16)
    out, out_vnet = decap_one(runner, frame, vnet)
    assert out_vnet == vnet_hdr(1, 1, l4 + 32 - removed, 1400, l4 - removed, 16)


def test_decap_then_more_actions_see_the_inner_packet(runner):
    inner = inner_packet()
    frame = tunnel_frame(inner, GRE_VARIANTS["key"])
    outs, _ = runner.run(frame, VNET_NONE, [A.output(OUT), A.decap(), A.set_tp_dst(8080), A.output(OUT)])
    assert outs[0][0] == frame
    want = IP(bytes(inner))
    want[TCP].dport = 8080
    del want[TCP].chksum
    assert outs[1][0] == decapped(frame, IP(bytes(want)))


@pytest.mark.parametrize("impl", [fastpath, refpath], ids=["c", "python"])
@pytest.mark.parametrize("deliver", [True, False])
def test_decap_deliver_routes_to_the_outer_destination(impl, deliver):
    """A tunnel endpoint in front of its hosts: the inner packet (to the VIP) goes to the host the tunnel was
    addressed to, not by the inner destination (which here has no route)."""
    dp = impl.Datapath()
    try:
        for p in range(4):
            dp.add_port(p, "memory")
        dp.nexthop_set(1, "connected", 30, src_mac=GW_MAC)
        dp.route_add(ip("203.0.113.0"), 24, 1)
        dp.neigh_set(30, ip(BACKEND), BACKEND_MAC, OUT)
        inner = inner_packet()
        frame = tunnel_frame(inner)
        dp.execute(0, frame, VNET_NONE, [A.decap(deliver=deliver), A.Action(consts.ACT_ROUTE)], now_ms=1)
        outs, ups = dp.take(OUT), dp.upcalls()
        if deliver:
            want = IP(bytes(inner))
            want.ttl -= 1
            del want.chksum
            assert [f for f, _v in outs] == [bytes(Ether(src=GW_MAC, dst=BACKEND_MAC) / IP(bytes(want)))]
        else:
            assert outs == [] and [u.reason for u in ups] == [consts.UPCALL_NO_ROUTE]
    finally:
        dp.close()


def bad(inner=None, **kw):
    return tunnel_frame(inner if inner is not None else inner_packet(), **kw)


BAD_FRAMES = {
    "arp": bytes(Ether() / ARP()),
    "ipv6": bytes(Ether() / IPv6(nh=4) / bytes(inner_packet())),
    "tcp": bytes(Ether() / IP(src=SWITCH, dst=BACKEND) / TCP()),
    "short-ipv4": bytes(Ether() / IP(src=SWITCH, dst=BACKEND, proto=4))[:14 + 19],
    "outer-mf": bad(outer_fields=dict(flags="MF")),
    "outer-offset": bad(outer_fields=dict(frag=3)),
    "gre-version-1": bad(gre=GRE(version=1, proto=0x0800)),
    "gre-routing": bad(gre=GRE(routing_present=1, proto=0x0800)),
    "gre-ipv6-payload": bad(gre=GRE(proto=0x86DD)),
    "gre-cut-short": bytes(Ether() / IP(src=SWITCH, dst=BACKEND, proto=47) / b"\x00\x00\x08"),
    "gre-key-missing": bytes(Ether() / IP(src=SWITCH, dst=BACKEND, proto=47) / b"\x20\x00\x08\x00\x00\x00"),
    "inner-short": bytes(Ether() / IP(src=SWITCH, dst=BACKEND, proto=4) / bytes(inner_packet())[:19]),
    "inner-not-ipv4": bytes(Ether() / IP(src=SWITCH, dst=BACKEND, proto=4) / (b"\x60" + bytes(39))),
    "inner-ihl-beyond": bytes(Ether() / IP(src=SWITCH, dst=BACKEND, proto=4) / (b"\x4f" + bytes(39))),
    "three-tags": bytes(Ether() / Dot1Q() / Dot1Q() / Dot1Q() / IP(proto=4) / bytes(inner_packet())),
    "runt": bytes(12),
}


@pytest.mark.parametrize("frame", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
def test_decap_refuses_and_counts(runner, frame):
    outs, errors = runner.run(frame, VNET_NONE, [A.output(OUT), A.decap(), A.output(OUT)])
    assert outs == [(frame, VNET_NONE)], "the list ends at the refusing DECAP"
    assert errors in (1, None)


def test_decap_then_route(impl_dp):
    dp = impl_dp
    dp.nexthop_set(1, "connected", 20, src_mac=GW_MAC)
    dp.route_add(ip("198.51.100.0"), 24, 1)
    dp.neigh_set(20, ip(VIP), BACKEND_MAC, 3)
    dp.flow_put(bytes(64), bytes(64), 0, [A.decap(), A.route()], now_ms=0)
    inner = inner_packet()
    dp.inject(0, tunnel_frame(inner, GRE_VARIANTS["plain"]))
    dp.run(now_ms=1)
    ((out, _vnet),) = dp.take(3)
    routed = IP(bytes(inner))
    routed.ttl -= 1
    del routed.chksum
    assert out == bytes(Ether(src="02:00:00:00:ff:01", dst="02:00:00:00:00:05") / IP(bytes(routed)))


# -- encapsulation (LB's tunnel modes) ------------------------------------------------------------------------------

@pytest.fixture(params=["c", "python"])
def impl_dp(request):
    d = (fastpath if request.param == "c" else refpath).Datapath(max_upcalls=16)
    for p in range(4):
        d.add_port(p, "memory")
    yield d
    d.close()


def lb_dp(dp, mode):
    dp.nexthop_set(2, "connected", 30, src_mac=GW_MAC)
    dp.route_add(ip("203.0.113.0"), 24, 2)
    dp.neigh_set(30, ip(BACKEND), BACKEND_MAC, 3)
    client = ConnTuple(6, ip(CLIENT), ip(VIP), 40000, 80)
    dp.conn_add(Conn(client, None, ip(BACKEND), ip(SWITCH), mode, consts.CS_ESTABLISHED, 1, 1), now_ms=0)
    dp.flow_put(bytes(64), bytes(64), 0, [A.lb(1)], now_ms=0)


@pytest.mark.parametrize("mode", [consts.CONN_IPIP, consts.CONN_GRE], ids=["ipip", "gre"])
@pytest.mark.parametrize("inner_fields", [{}, dict(tos=0x2E, flags="DF"), dict(flags="MF")],
                         ids=["plain", "tos-df", "first-fragment"])
def test_outer_header_fields(impl_dp, mode, inner_fields):
    lb_dp(impl_dp, mode)
    inner = inner_packet(**inner_fields)
    frame = bytes(Ether(src="02:00:00:00:00:10", dst="02:00:00:00:ff:01") / inner)
    impl_dp.inject(1, frame)
    impl_dp.run(now_ms=1)
    ((out, _vnet),) = impl_dp.take(3)
    outer = Ether(out)[IP]
    gre_len = 4 if mode == consts.CONN_GRE else 0
    assert (outer.version, outer.ihl, outer.tos, outer.id, outer.frag, outer.ttl) == (4, 5, inner.tos, 0, 0, 63)
    assert outer.flags.DF == inner.flags.DF and not outer.flags.MF
    assert (outer.src, outer.dst, outer.len) == (SWITCH, BACKEND, 20 + gre_len + inner.len)
    check = IP(bytes(outer))
    del check.chksum
    assert outer.chksum == IP(bytes(check)).chksum
    if mode == consts.CONN_GRE:
        assert outer.proto == 47 and bytes(outer.payload)[:4] == b"\x00\x00\x08\x00"
    else:
        assert outer.proto == 4
    assert bytes(outer)[20 + gre_len:] == bytes(inner), "the inner packet is untouched"


@pytest.mark.parametrize("mode", [consts.CONN_IPIP, consts.CONN_GRE], ids=["ipip", "gre"])
@pytest.mark.parametrize("l4", ["tcp", "udp"])
def test_encap_then_decap_round_trips(impl_dp, mode, l4):
    """LB encapsulates and routes; DECAP (both implementations) gives back the client's IP packet byte for byte,
    and the vnet offsets it started with."""
    lb_dp(impl_dp, mode)
    impl_dp.conn_add(Conn(ConnTuple(17, ip(CLIENT), ip(VIP), 40000, 53), None, ip(BACKEND), ip(SWITCH), mode,
                          consts.CS_UDP, 1, 1), now_ms=0)
    frame = bytes(Ether(src="02:00:00:00:00:10", dst="02:00:00:00:ff:01") / inner_packet(l4))
    vnet = vnet_hdr(1, 0, 0, 0, 34, 16 if l4 == "tcp" else 6)
    impl_dp.inject(1, frame, vnet)
    impl_dp.run(now_ms=1)
    ((out, out_vnet),) = impl_dp.take(3)
    for impl in (fastpath, refpath):
        (back,) = impl.actions_apply(out, out_vnet, 3, [A.decap(), A.output(0)])
        assert back.frame[14:] == frame[14:] and back.frame[:12] == BACKEND_MAC + GW_MAC
        assert back.vnet == vnet


# -- C and twin alike -----------------------------------------------------------------------------------------------

gre_flags = st.sampled_from([0, 0x8000, 0x2000, 0x1000, 0xB000, 0x4000, 0x0001, 0x0700, 0x0800]) \
    | st.integers(0, 0xFFFF)


@st.composite
def tunnel_frames(draw):
    inner = bytes(inner_packet(draw(st.sampled_from(["tcp", "udp"]))))
    if draw(st.integers(0, 5)) == 0:
        inner = draw(st.binary(max_size=30))
    kind = draw(st.sampled_from(["ipip", "gre", "gre", "other"]))
    outer = IP(src=SWITCH, dst=BACKEND, proto={"ipip": 4, "gre": 47}.get(kind, draw(st.sampled_from([6, 17, 41]))),
               flags=draw(st.sampled_from([0, 0, "DF", "MF"])), frag=draw(st.sampled_from([0, 0, 0, 1])),
               options=draw(st.sampled_from([b"", b"", b"\x94\x04\x00\x00"])))
    body = inner
    if kind == "gre":
        flags = draw(gre_flags)
        words = sum(4 for bit in (0x8000, 0x2000, 0x1000) if flags & bit)
        proto = draw(st.sampled_from([0x0800, 0x0800, 0x86DD, 0x6558]))
        body = struct.pack("!HH", flags, proto) + draw(st.binary(min_size=words, max_size=words)) + inner
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:ff:01")
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        eth = eth / Dot1Q(vlan=draw(st.integers(0, 4095)))
    frame = bytes(eth / outer / Raw(body))
    if draw(st.integers(0, 4)) == 0:
        frame = frame[:draw(st.integers(0, len(frame)))]
    return frame


@st.composite
def tunnel_vnets(draw):
    return vnet_hdr(draw(st.sampled_from([0, 1])), draw(st.sampled_from([0, 1, 4, 0x81])),
                    draw(st.sampled_from([0, 10, 54, 90])), 1400, draw(st.sampled_from([0, 4, 34, 58, 70, 0xFFFF])),
                    draw(st.sampled_from([6, 16])))


decap_lists = st.lists(st.sampled_from([A.decap(), A.decap(), A.output(OUT), A.pop_vlan(), A.push_vlan(7),
                                        A.set_ipv4_dst(VIP), A.route()]), min_size=1, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(tunnel_frames(), tunnel_vnets(), decap_lists)
def test_decap_apply_equal(frame, vnet, actions):
    c = fastpath.actions_apply(frame, vnet, 0, actions)
    py = refpath.actions_apply(frame, vnet, 0, actions)
    assert [tuple(o) for o in c] == [tuple(o) for o in py], f"frame={frame.hex()} vnet={vnet.hex()} {actions}"


def hits_merged(stats):
    """C's exact-match cache is invisible but in the split of hits (docs/DATAPATH.md "Flow table")."""
    stats = dict(stats)
    stats["hits"] = stats.pop("emc_hits") + stats.pop("masked_hits")
    return stats


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(tunnel_frames(), tunnel_vnets()), max_size=12), decap_lists)
def test_decap_datapath_equal(frames, actions):
    dps = [fastpath.Datapath(max_flows=4, emc_entries=4, max_upcalls=32),
           refpath.Datapath(max_flows=4, emc_entries=4, max_upcalls=32)]
    try:
        for dp in dps:
            for p in range(4):
                dp.add_port(p, "memory")
            dp.flow_put(bytes(64), bytes(64), 0, actions, now_ms=0)
            for frame, vnet in frames:
                dp.execute(0, frame, vnet, actions, now_ms=1)
                dp.inject(1, frame, vnet)
            dp.run(now_ms=2)
        states = [({p: dp.take(p) for p in range(4)}, [tuple(u) for u in dp.upcalls()], hits_merged(dp.stats()))
                  for dp in dps]
        assert states[0] == states[1]
    finally:
        for dp in dps:
            dp.close()


def test_icmp_inner_packets_decap_too(runner):
    inner = IP(bytes(IP(src=CLIENT, dst=VIP) / ICMP()))
    frame = tunnel_frame(inner)
    assert decap_one(runner, frame)[0] == decapped(frame, inner)
