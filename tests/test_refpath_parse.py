"""The twin's parser against scapy's decoding of the same frames, and every PE_* error (docs/DATAPATH.md)."""
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, LLC, SNAP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from pyswitch import consts
from pyswitch.flowkey import FlowKey
from pyswitch.refpath import parse

SRC = "02:00:00:00:00:01"
DST = "02:00:00:00:00:02"


def mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


def ip4(text):
    return bytes(int(x) for x in text.split(".")) + bytes(12)


def ip6(text):
    import ipaddress
    return ipaddress.IPv6Address(text).packed


def expected(pkt, in_port=0):
    """The key and offsets scapy's decoding says the parser must produce (valid frames only)."""
    raw = bytes(pkt)
    k = dict(in_port=in_port)
    eth = pkt.getlayer(Ether) or pkt.getlayer(Dot3)
    k["eth_dst"], k["eth_src"] = mac(eth.dst), mac(eth.src)
    l3 = 14
    if pkt.haslayer(Dot3):
        k["eth_type"] = consts.ETH_TYPE_NONE
        return FlowKey(**k), 0, 0
    tags = [layer for layer in pkt.layers() if layer in (Dot1Q, Dot1AD)]
    if tags:
        tag = pkt.getlayer(tags[0])
        k["vlan_tci"] = tag.prio << 13 | 0x1000 | tag.vlan
        l3 += 4 * len(tags)
    k["eth_type"] = struct.unpack_from("!H", raw, l3 - 2)[0]
    l4 = 0
    if pkt.haslayer(ARP):
        a = pkt[ARP]
        k.update(nw_proto=a.op, nw_src=ip4(a.psrc), nw_dst=ip4(a.pdst))
        return FlowKey(**k), l3, 0
    if pkt.haslayer(IP):
        ip = pkt[IP]
        frag = (1 if ip.flags.MF or ip.frag else 0) | (2 if ip.frag else 0)
        k.update(nw_proto=ip.proto, nw_tos=ip.tos, nw_ttl=ip.ttl, nw_frag=frag, nw_src=ip4(ip.src),
                 nw_dst=ip4(ip.dst))
        l4 = l3 + ip.ihl * 4
        later = ip.frag != 0
    elif pkt.haslayer(IPv6):
        ip = pkt[IPv6]
        k.update(nw_tos=ip.tc, nw_ttl=ip.hlim, nw_src=ip6(ip.src), nw_dst=ip6(ip.dst))
        layer, l4, later = ip, l3 + 40, False
        proto = ip.nh
        while proto in (0, 43, 44, 51, 60):
            layer = layer.payload
            if proto == 44:
                k["nw_frag"] = (1 if layer.m or layer.offset else 0) | (2 if layer.offset else 0)
                later = layer.offset != 0
            l4 += len(bytes(layer)) - len(bytes(layer.payload))
            proto = layer.nh
        k["nw_proto"] = proto
    else:
        return FlowKey(**k), 0, 0
    if later:
        return FlowKey(**k), l3, 0
    # Decode L4 from the offset found above: scapy does not bind every extension header (AH) to its payload.
    if k["nw_proto"] == 6:
        t = TCP(raw[l4:])
        k.update(tp_src=t.sport, tp_dst=t.dport, tcp_flags=int(t.flags) & 0xFFF)
    elif k["nw_proto"] == 17:
        u = UDP(raw[l4:])
        k.update(tp_src=u.sport, tp_dst=u.dport)
    elif pkt.haslayer(ICMP) and k["nw_proto"] == 1:
        k.update(tp_src=pkt[ICMP].type, tp_dst=pkt[ICMP].code)
    elif k["nw_proto"] == 58:
        k.update(tp_src=raw[l4], tp_dst=raw[l4 + 1])
    else:
        l4 = 0
    return FlowKey(**k), l3, l4


VALID = {
    "tcp4": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="198.51.100.7", tos=0x2e, ttl=17)
    / TCP(sport=1234, dport=80, flags="SA"),
    "tcp4_all_flags": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2")
    / TCP(sport=1, dport=2, flags=0xFFF),
    "tcp4_options": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2")
    / TCP(sport=5, dport=6, options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]) / Raw(b"data"),
    "udp4": Ether(src=SRC, dst=DST) / IP(src="203.0.113.9", dst="192.0.2.2") / UDP(sport=53, dport=5353) / (b"x" * 9),
    "icmp4": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2") / ICMP(type=3, code=4),
    "ip4_options": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2", options=b"\x94\x04\x00\x00")
    / UDP(sport=7, dport=8),
    "ip4_first_fragment": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2", flags="MF", id=9)
    / TCP(sport=7, dport=8) / (b"y" * 24),
    "ip4_later_fragment": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2", frag=100, proto=6)
    / Raw(b"zzz"),
    "ip4_other_proto": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / b"gre!",
    "ip4_padded": Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2") / ICMP() / Raw(b"\0" * 0)
    / Raw(b""),
    "dot1q": Ether(src=SRC, dst=DST) / Dot1Q(vlan=100, prio=5, dei=1) / IP(src="192.0.2.1", dst="192.0.2.2")
    / TCP(),
    "qinq": Ether(src=SRC, dst=DST) / Dot1AD(vlan=7, prio=2) / Dot1Q(vlan=100) / IP(src="192.0.2.1", dst="192.0.2.2")
    / UDP(),
    "qinq_8100_8100": Ether(src=SRC, dst=DST) / Dot1Q(vlan=4095, prio=7) / Dot1Q(vlan=1) / ARP(pdst="192.0.2.2"),
    "arp_request": Ether(src=SRC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="192.0.2.1", pdst="192.0.2.254"),
    "arp_reply": Ether(src=SRC, dst=DST) / ARP(op=2, psrc="192.0.2.254", pdst="192.0.2.1", hwsrc=SRC),
    "tcp6": Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0xb8, hlim=3)
    / TCP(sport=443, dport=50000, flags="PA"),
    "udp6": Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8:1::2") / UDP(sport=547, dport=546),
    "icmp6": Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(),
    "ip6_ext_chain": Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
    / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / AH(nh=6, payloadlen=4, icv=b"\0" * 12) / TCP(sport=9, dport=10),
    "ip6_first_fragment": Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2")
    / IPv6ExtHdrFragment(m=1, id=5) / TCP(sport=1, dport=2) / (b"q" * 8),
    "ip6_later_fragment": Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2")
    / IPv6ExtHdrFragment(offset=10, nh=17) / Raw(b"qqq"),
    "ip6_atomic_fragment": Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2")
    / IPv6ExtHdrFragment(nh=58) / ICMPv6EchoRequest(),
    "ip6_no_next": Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=59),
    "llc": Dot3(src=SRC, dst=DST) / LLC() / SNAP() / Raw(b"stp"),
    "lldp_type": Ether(src=SRC, dst=DST, type=0x88CC) / Raw(bytes(10)),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_frames_match_scapy(name):
    pkt = Ether(bytes(VALID[name])) if not VALID[name].haslayer(Dot3) else Dot3(bytes(VALID[name]))
    key, l3, l4 = expected(pkt, in_port=7)
    res = parse(bytes(pkt), in_port=7)
    assert res.error == consts.PE_OK
    assert FlowKey.unpack(res.key) == key
    assert (res.l3_ofs, res.l4_ofs) == (l3, l4)


def test_ethernet_padding_after_total_length_is_ignored():
    pkt = Ether(src=SRC, dst=DST) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2)
    frame = bytes(pkt) + bytes(30)
    assert parse(frame).error == consts.PE_OK


def test_dei_is_dropped_from_vlan_tci():
    frame = bytes(Ether(src=SRC, dst=DST) / Dot1Q(vlan=10, prio=1, dei=1) / IP() / TCP())
    assert FlowKey.unpack(parse(frame).key).vlan_tci == 1 << 13 | 0x1000 | 10


def test_arp_opcode_over_255_gives_nw_proto_0():
    frame = bytes(Ether(src=SRC, dst=DST) / ARP(op=0x0102, psrc="192.0.2.1", pdst="192.0.2.2"))
    k = FlowKey.unpack(parse(frame).key)
    assert (k.nw_proto, k.nw_src[:4]) == (0, bytes([192, 0, 2, 1]))


def test_udp_length_not_checked_for_gso():
    frame = bytearray(bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / (b"x" * 20)))
    struct.pack_into("!H", frame, 14 + 20 + 4, 60000)
    assert parse(bytes(frame)).error == consts.PE_L4_TRUNC
    assert parse(bytes(frame), is_gso=True).error == consts.PE_OK


# -- errors ---------------------------------------------------------------------------------------------------------

TCP4 = bytes(VALID["tcp4"])
TCP6 = bytes(VALID["tcp6"])


def patched(frame, offset, fmt, value):
    frame = bytearray(frame)
    struct.pack_into(fmt, frame, offset, value)
    return bytes(frame)


def test_runt():
    res = parse(bytes(13), in_port=3)
    assert res == (consts.PE_RUNT, FlowKey(in_port=3).pack(), 0, 0)
    # A tag needs 4 bytes and 2 more for the next type: 18 in all.
    tagged = bytes(Ether(src=SRC, dst=DST) / Dot1Q(vlan=3) / IP() / TCP())
    assert parse(tagged[:17]).error == consts.PE_RUNT
    assert parse(tagged[:18]).error == consts.PE_IP_TRUNC
    res = parse(bytes(Ether(src=SRC, dst=DST) / Dot1AD(vlan=3) / Dot1Q(vlan=4) / Dot1Q(vlan=5))[:21])
    assert res[0] == consts.PE_RUNT
    assert FlowKey.unpack(res[1]).vlan_tci == 0x1003          # the first tag passed its check


def test_oversize_before_runt_and_not_for_gso():
    assert parse(bytes(10), max_frame=8).error == consts.PE_OVERSIZE
    assert parse(TCP4, max_frame=len(TCP4) - 1).error == consts.PE_OVERSIZE
    assert parse(TCP4, max_frame=len(TCP4)).error == consts.PE_OK
    assert parse(TCP4, max_frame=len(TCP4) - 1, is_gso=True).error == consts.PE_OK


def test_three_tags():
    frame = bytes(Ether(src=SRC, dst=DST) / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP())
    res = parse(frame)
    assert res.error == consts.PE_VLAN
    k = FlowKey.unpack(res.key)
    assert (k.eth_src, k.vlan_tci, k.eth_type) == (mac(SRC), 0x1001, 0)


@pytest.mark.parametrize("offset,value", [(14, 2), (16, 0x0801), (18, 8), (19, 6)])
def test_arp_errors(offset, value):
    frame = bytes(VALID["arp_reply"])
    assert parse(patched(frame, offset, "!B" if offset >= 18 else "!H", value)).error == consts.PE_ARP
    assert parse(frame[:14 + 27]).error == consts.PE_ARP


def test_ipv4_errors():
    assert parse(TCP4[:14 + 19]).error == consts.PE_IP_TRUNC
    assert parse(patched(TCP4, 14, "!B", 0x65)).error == consts.PE_IP_VERSION
    assert parse(patched(TCP4, 14, "!B", 0x44)).error == consts.PE_IP_IHL
    assert parse(patched(TCP4, 14, "!B", 0x4F)).error == consts.PE_IP_IHL
    assert parse(patched(TCP4, 16, "!H", 19)).error == consts.PE_IP_LEN
    assert parse(patched(TCP4, 16, "!H", len(TCP4) - 13)).error == consts.PE_IP_LEN
    res = parse(patched(TCP4, 14, "!B", 0x65))
    assert FlowKey.unpack(res.key).eth_type == 0x0800 and res.l3_ofs == 0


def test_ipv6_errors():
    assert parse(TCP6[:14 + 39]).error == consts.PE_IP_TRUNC
    assert parse(patched(TCP6, 14, "!B", 0x40)).error == consts.PE_IP_VERSION
    assert parse(patched(TCP6, 18, "!H", len(TCP6) - 14 - 40 + 1)).error == consts.PE_IP_LEN


def test_ipv6_extension_errors():
    hbh = Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
    frame = bytes(hbh / TCP())
    # Routing header claims 16 bytes but the payload ends after 8.
    cut = bytes(Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=43)
                / Raw(b"\x06\x01" + bytes(6)))
    res = parse(cut)
    assert (res.error, res.l3_ofs, FlowKey.unpack(res.key).nw_proto) == (consts.PE_IP6_EXT, 14, 0)
    assert FlowKey.unpack(res.key).nw_ttl == 64
    nine = IPv6(src="2001:db8::1", dst="2001:db8::2")
    for _ in range(9):
        nine = nine / IPv6ExtHdrDestOpt()
    assert parse(bytes(Ether(src=SRC, dst=DST) / nine / UDP())).error == consts.PE_IP6_EXT
    eight = IPv6(src="2001:db8::1", dst="2001:db8::2")
    for _ in range(8):
        eight = eight / IPv6ExtHdrDestOpt()
    assert parse(bytes(Ether(src=SRC, dst=DST) / eight / UDP())).error == consts.PE_OK
    assert parse(frame).error == consts.PE_OK
    # A fragment header cut short.
    frag = bytes(Ether(src=SRC, dst=DST) / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=44) / Raw(b"\x06\0\0"))
    assert parse(frag).error == consts.PE_IP6_EXT


def test_l4_errors():
    tcp_off = 14 + 20
    assert parse(patched(TCP4, 16, "!H", 20 + 19)).error == consts.PE_L4_TRUNC     # region 19 < 20
    assert parse(patched(TCP4, tcp_off + 12, "!B", 0x40)).error == consts.PE_L4_TRUNC
    assert parse(patched(TCP4, tcp_off + 12, "!B", 0x60)).error == consts.PE_L4_TRUNC
    udp = bytes(VALID["udp4"])
    assert parse(patched(udp, tcp_off + 4, "!H", 7)).error == consts.PE_L4_TRUNC
    assert parse(patched(udp, tcp_off + 4, "!H", len(udp) - tcp_off + 1)).error == consts.PE_L4_TRUNC
    assert parse(patched(udp, 16, "!H", 27)).error == consts.PE_L4_TRUNC
    icmp = bytes(VALID["icmp4"])
    assert parse(patched(icmp, 16, "!H", 23)).error == consts.PE_L4_TRUNC
    res = parse(patched(TCP4, tcp_off + 12, "!B", 0x40))
    k = FlowKey.unpack(res.key)
    assert (res.l3_ofs, res.l4_ofs, k.nw_proto, k.tp_src) == (14, 0, 6, 0)
    icmp6 = bytes(VALID["icmp6"])
    assert parse(patched(icmp6, 18, "!H", 3)[:14 + 43]).error == consts.PE_L4_TRUNC


def test_icmp_in_ipv6_and_icmpv6_in_ipv4_are_other_protocols():
    f4 = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2", proto=58) / b"\x80\x00")
    f6 = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=1) / b"\x08\x00")
    for f in (f4, f6):
        res = parse(f)
        assert res.error == consts.PE_OK and res.l4_ofs == 0 and FlowKey.unpack(res.key).tp_src == 0
