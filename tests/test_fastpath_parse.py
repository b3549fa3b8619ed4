"""ps_parse against scapy's decoding of the same frames, and every PS_PE_* error (docs/DATAPATH.md "Parsing")."""
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from pyswitch import consts
from pyswitch.fastpath import parse
from pyswitch.flowkey import FlowKey, mac_bytes

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def eth(**kw):
    return Ether(**{"src": MAC_A, "dst": MAC_B, **kw})


def _ip_bytes(addr, v6):
    import ipaddress
    if v6:
        return ipaddress.IPv6Address(addr).packed
    return ipaddress.IPv4Address(addr).packed + bytes(12)


def expected_key(pkt, in_port=0):
    """The key scapy's decoding of `pkt` implies, written independently of the parser."""
    pkt = Ether(bytes(pkt))
    fields = dict(in_port=in_port, eth_dst=mac_bytes(pkt.dst), eth_src=mac_bytes(pkt.src))
    layer = pkt.payload
    eth_type = pkt.type
    first_tag = True
    while isinstance(layer, (Dot1Q, Dot1AD)):
        if first_tag:
            fields["vlan_tci"] = (layer.prio << 13) | 0x1000 | layer.vlan
            first_tag = False
        eth_type = layer.type
        layer = layer.payload
    fields["eth_type"] = eth_type if eth_type >= 0x600 else 0x05FF
    frag_later = False
    if isinstance(layer, ARP):
        fields.update(nw_proto=layer.op, nw_src=_ip_bytes(layer.psrc, False), nw_dst=_ip_bytes(layer.pdst, False))
        layer = None
    elif isinstance(layer, IP):
        frag = 0
        if layer.flags.MF or layer.frag:
            frag = consts.FRAG_ANY | (consts.FRAG_LATER if layer.frag else 0)
        frag_later = bool(layer.frag)
        fields.update(nw_proto=layer.proto, nw_tos=layer.tos, nw_ttl=layer.ttl, nw_frag=frag,
                      nw_src=_ip_bytes(layer.src, False), nw_dst=_ip_bytes(layer.dst, False))
        layer = layer.payload
    elif isinstance(layer, IPv6):
        fields.update(nw_tos=layer.tc, nw_ttl=layer.hlim, nw_src=_ip_bytes(layer.src, True),
                      nw_dst=_ip_bytes(layer.dst, True))
        nh = layer.nh
        layer = layer.payload
        frag = 0
        while isinstance(layer, (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment)):
            if isinstance(layer, IPv6ExtHdrFragment) and (layer.m or layer.offset):
                frag = consts.FRAG_ANY | (consts.FRAG_LATER if layer.offset else 0)
                frag_later = bool(layer.offset)
            nh = layer.nh
            layer = layer.payload
        fields.update(nw_proto=nh, nw_frag=frag)
    else:
        layer = None
    if layer is not None and not frag_later:
        if isinstance(layer, TCP):
            fields.update(tp_src=layer.sport, tp_dst=layer.dport, tcp_flags=int(layer.flags))
        elif isinstance(layer, UDP):
            fields.update(tp_src=layer.sport, tp_dst=layer.dport)
        elif isinstance(layer, ICMP) or layer.name.startswith("ICMPv6"):
            fields.update(tp_src=layer.type, tp_dst=layer.code)
    return FlowKey(**fields).pack()


def l4_offset(pkt, cls):
    raw = bytes(pkt)
    return len(raw) - len(bytes(Ether(raw)[cls]))


GOOD_FRAMES = {
    "ipv4_tcp": eth() / IP(src="198.51.100.1", dst="198.51.100.2", tos=0x28, ttl=17) / TCP(sport=1234, dport=80, flags="SA"),
    "ipv4_tcp_options": eth() / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]),
    "ipv4_udp": eth() / IP(src="198.51.100.1", dst="203.0.113.9") / UDP(sport=53, dport=5353) / Raw(b"q" * 30),
    "ipv4_icmp": eth() / IP(src="198.51.100.1", dst="198.51.100.2") / ICMP(type=8, code=0),
    "ipv4_options": eth() / IP(src="198.51.100.1", dst="198.51.100.2", options=b"\x01\x01\x01\x00") / UDP(),
    "ipv4_first_fragment": eth() / IP(src="198.51.100.1", dst="198.51.100.2", flags="MF") / UDP(sport=7, dport=8) / Raw(b"x" * 16),
    "ipv4_later_fragment": eth() / IP(src="198.51.100.1", dst="198.51.100.2", frag=3, proto=17) / Raw(b"x" * 16),
    "ipv4_other_proto": eth() / IP(src="198.51.100.1", dst="198.51.100.2", proto=47) / Raw(b"gre!" * 4),
    "ipv4_padded": eth() / IP(src="198.51.100.1", dst="198.51.100.2") / UDP() / Raw(b"\x00" * 20),
    "ipv6_tcp": eth() / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0xb8, hlim=9) / TCP(sport=443, dport=5555, flags="PA"),
    "ipv6_udp": eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2),
    "ipv6_icmpv6": eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(),
    "ipv6_ext_chain": eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
    / IPv6ExtHdrRouting(addresses=["2001:db8::3"]) / IPv6ExtHdrDestOpt() / TCP(sport=9, dport=10),
    "ipv6_first_fragment": eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(m=1, nh=17) / UDP(sport=3, dport=4),
    "ipv6_later_fragment": eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(offset=5, nh=17) / Raw(b"x" * 8),
    "arp_request": eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="198.51.100.1", pdst="198.51.100.2", hwsrc=MAC_A),
    "arp_reply": eth() / ARP(op=2, psrc="198.51.100.2", pdst="198.51.100.1"),
    "vlan_ipv4": eth() / Dot1Q(vlan=100, prio=5, id=1) / IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=5, dport=6),
    "qinq": eth() / Dot1AD(vlan=7, prio=3) / Dot1Q(vlan=100) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(),
    "double_8100": eth() / Dot1Q(vlan=7) / Dot1Q(vlan=8) / ARP(psrc="192.0.2.1", pdst="192.0.2.2"),
    "other_ethertype": eth(type=0x88cc) / Raw(b"lldp" * 10),
}


@pytest.mark.parametrize("name", sorted(GOOD_FRAMES))
def test_good_frames_match_scapy(name):
    pkt = GOOD_FRAMES[name]
    frame = bytes(pkt)
    result = parse(frame, in_port=7)
    assert result.error == consts.PE_OK
    assert result.key == expected_key(pkt, in_port=7), FlowKey.unpack(result.key)
    decoded = Ether(frame)
    for cls in (TCP, UDP, ICMP, ICMPv6EchoRequest):
        if cls in decoded and result.l4_ofs:
            assert result.l4_ofs == l4_offset(pkt, cls)
            break
    if ARP in decoded or IP in decoded or IPv6 in decoded:
        assert result.l3_ofs == len(frame) - len(bytes(decoded[ARP if ARP in decoded else IP if IP in decoded else IPv6]))
    else:
        assert result.l3_ofs == 0


def test_l4_ofs_zero_for_later_fragment_and_other_protocols():
    assert parse(bytes(GOOD_FRAMES["ipv4_later_fragment"])).l4_ofs == 0
    assert parse(bytes(GOOD_FRAMES["ipv6_later_fragment"])).l4_ofs == 0
    assert parse(bytes(GOOD_FRAMES["ipv4_other_proto"])).l4_ofs == 0
    assert parse(bytes(GOOD_FRAMES["ipv4_other_proto"])).l3_ofs == 14


def test_ieee8023_length_frame():
    frame = bytes.fromhex("02000000000b 02000000000a 002e") + b"\x42" * 46
    result = parse(frame)
    assert result == (consts.PE_OK, FlowKey(eth_dst=mac_bytes(MAC_B), eth_src=mac_bytes(MAC_A),
                                            eth_type=0x05FF).pack(), 0, 0)


def test_vlan_dei_dropped():
    key = FlowKey.unpack(parse(bytes(eth() / Dot1Q(vlan=5, prio=7, id=1) / Raw(b"x" * 40))).key)
    assert key.vlan_tci == (7 << 13) | 0x1000 | 5


def test_arp_big_opcode_is_zero():
    frame = bytearray(bytes(GOOD_FRAMES["arp_reply"]))
    frame[20:22] = struct.pack("!H", 0x1234)
    key = FlowKey.unpack(parse(bytes(frame)).key)
    assert key.nw_proto == 0 and key.nw_src[:4] == bytes([198, 51, 100, 2])


def _set(frame, offset, fmt, value):
    frame = bytearray(bytes(frame))
    struct.pack_into(fmt, frame, offset, value)
    return bytes(frame)


IP4 = bytes(eth() / IP(src="198.51.100.1", dst="198.51.100.2") / TCP(sport=1, dport=2))
IP6 = bytes(eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2))


def _key_fields(frame, **kw):
    return FlowKey.unpack(parse(frame, **kw).key)


# (name, frame, parse kwargs, expected error, fields that must still be set)
ERROR_CASES = [
    ("runt_13", bytes(13), {}, consts.PE_RUNT),
    ("runt_empty", b"", {}, consts.PE_RUNT),
    ("oversize", IP4, {"max_frame": len(IP4) - 1}, consts.PE_OVERSIZE),
    ("oversize_before_runt", bytes(10), {"max_frame": 5}, consts.PE_OVERSIZE),
    ("runt_vlan", bytes(eth(type=0x8100)) + b"\x00\x05\x08", {}, consts.PE_RUNT),
    ("runt_third_tag_cut", bytes(eth())[:12] + bytes.fromhex("8100 0001 8100 0002 8100 00"), {}, consts.PE_RUNT),
    ("three_tags", bytes(eth() / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / Raw(b"x" * 30)), {}, consts.PE_VLAN),
    ("arp_short", bytes(eth() / ARP())[:14 + 27], {}, consts.PE_ARP),
    ("arp_htype", _set(eth() / ARP(), 14, "!H", 6), {}, consts.PE_ARP),
    ("arp_ptype", _set(eth() / ARP(), 16, "!H", 0x86DD), {}, consts.PE_ARP),
    ("arp_hlen", _set(eth() / ARP(), 18, "!B", 8), {}, consts.PE_ARP),
    ("arp_plen", _set(eth() / ARP(), 19, "!B", 16), {}, consts.PE_ARP),
    ("ip_trunc", IP4[:14 + 19], {}, consts.PE_IP_TRUNC),
    ("ip6_trunc", IP6[:14 + 39], {}, consts.PE_IP_TRUNC),
    ("ip_version", _set(IP4, 14, "!B", 0x65), {}, consts.PE_IP_VERSION),
    ("ip6_version", _set(IP6, 14, "!B", 0x40), {}, consts.PE_IP_VERSION),
    ("ip_ihl_small", _set(IP4, 14, "!B", 0x44), {}, consts.PE_IP_IHL),
    ("ip_ihl_big", _set(IP4, 14, "!B", 0x4F), {}, consts.PE_IP_IHL),
    ("ip_len_small", _set(IP4, 16, "!H", 19), {}, consts.PE_IP_LEN),
    ("ip_len_big", _set(IP4, 16, "!H", len(IP4) - 13), {}, consts.PE_IP_LEN),
    ("ip6_len_big", _set(IP6, 18, "!H", len(IP6) - 14 - 39), {}, consts.PE_IP_LEN),
    ("ip6_ext_cut", bytes(eth() / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=0, plen=4) / Raw(b"\x11\x00\x00\x00")),
     {}, consts.PE_IP6_EXT),
    ("ip6_ext_nine", bytes(eth() / IPv6(src="2001:db8::1", dst="2001:db8::2")
                           / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                           / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                           / IPv6ExtHdrDestOpt() / UDP()), {}, consts.PE_IP6_EXT),
    ("ip6_frag_cut", bytes(eth() / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=44, plen=6) / Raw(b"\x11" + bytes(5))),
     {}, consts.PE_IP6_EXT),
    ("tcp_trunc", bytes(eth() / IP(src="198.51.100.1", dst="198.51.100.2", proto=6) / Raw(bytes(19))), {}, consts.PE_L4_TRUNC),
    ("tcp_doff_small", _set(IP4, 14 + 20 + 12, "!B", 0x40), {}, consts.PE_L4_TRUNC),
    ("tcp_doff_big", _set(IP4, 14 + 20 + 12, "!B", 0x60), {}, consts.PE_L4_TRUNC),
    ("udp_trunc", bytes(eth() / IP(src="198.51.100.1", dst="198.51.100.2", proto=17) / Raw(bytes(7))), {}, consts.PE_L4_TRUNC),
    ("udp_len_small", _set(IP6, 14 + 40 + 4, "!H", 7), {}, consts.PE_L4_TRUNC),
    ("udp_len_big", _set(IP6, 14 + 40 + 4, "!H", 9), {}, consts.PE_L4_TRUNC),
    ("icmp_trunc", bytes(eth() / IP(src="198.51.100.1", dst="198.51.100.2", proto=1) / Raw(bytes(3))), {}, consts.PE_L4_TRUNC),
    ("icmpv6_trunc", bytes(eth() / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=58) / Raw(bytes(3))), {}, consts.PE_L4_TRUNC),
]


@pytest.mark.parametrize("name,frame,kwargs,error", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_cases(name, frame, kwargs, error):
    result = parse(frame, in_port=3, **kwargs)
    assert result.error == error
    key = FlowKey.unpack(result.key)
    assert key.in_port == 3
    assert key.tp_src == key.tp_dst == key.tcp_flags == 0


def test_error_keeps_earlier_headers_only():
    # An IPv4 header passed: its fields and l3_ofs stay, L4 fields are zero.
    result = parse(_set(IP4, 14 + 20 + 12, "!B", 0x40))
    key = FlowKey.unpack(result.key)
    assert (result.l3_ofs, result.l4_ofs) == (14, 0)
    assert key.nw_proto == 6 and key.nw_src[:4] == bytes([198, 51, 100, 1]) and key.tp_src == 0
    # A bad IPv4 header: Ethernet fields stay, nothing of IP is written.
    result = parse(_set(IP4, 16, "!H", 19))
    key = FlowKey.unpack(result.key)
    assert result.l3_ofs == 0 and key.eth_type == 0x0800 and key.nw_proto == 0 and key.nw_ttl == 0
    # A runt tag leaves the addresses; a third tag leaves the first tag's TCI.
    key = FlowKey.unpack(parse(bytes(eth(type=0x8100)) + b"\x00\x05").key)
    assert key.eth_src == mac_bytes(MAC_A) and key.vlan_tci == 0 and key.eth_type == 0
    key = FlowKey.unpack(parse(dict((c[0], c[1]) for c in ERROR_CASES)["three_tags"]).key)
    assert key.vlan_tci == 0x1001 and key.eth_type == 0
    # A bad extension header: IPv6 fields and l3_ofs stay, nw_proto stays 0.
    result = parse(dict((c[0], c[1]) for c in ERROR_CASES)["ip6_ext_nine"])
    key = FlowKey.unpack(result.key)
    assert result.l3_ofs == 14 and key.nw_ttl == 64 and key.nw_proto == 0


def test_gso_relaxes_oversize_and_udp_length():
    big = bytes(eth() / IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=1, dport=2) / Raw(bytes(3000)))
    assert parse(big, max_frame=1514).error == consts.PE_OVERSIZE
    assert parse(big, max_frame=1514, is_gso=True).error == consts.PE_OK
    lying = _set(big, 14 + 20 + 4, "!H", 1480)
    lying = _set(lying, 14 + 20 + 4, "!H", 60000)
    assert parse(lying).error == consts.PE_L4_TRUNC
    assert parse(lying, is_gso=True).error == consts.PE_OK
    assert FlowKey.unpack(parse(lying, is_gso=True).key).tp_dst == 2
