"""Software offloads (csrc/offload.c and its twin pyswitch/refpath/offload.py; docs/DATAPATH.md "Offloads").

Hand-built frames for each case the contract names, run against both implementations, with scapy as the oracle for
what a checksum, a length or an IPv4 id must be; then hypothesis feeds both the same generated and mutated frames
and vnet headers and asserts they agree on every output byte and every refusal.
"""
import errno
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_LSRR, IPOption_SSRR, in4_chksum
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                                in6_chksum)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Padding, Raw
from scapy.utils import checksum as scapy_checksum

from pyswitch import consts, fastpath, refpath
from pyswitch.flowkey import FlowKey

from test_differential import LYING, valid_frames

IMPLS = pytest.mark.parametrize("impl", [fastpath, refpath], ids=["c", "python"])

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
IP4_A, IP4_B = "192.0.2.1", "198.51.100.2"
IP6_A, IP6_B = "2001:db8::1", "2001:db8:1::2"
NEEDS_CSUM = consts.VNET_F_NEEDS_CSUM
TCPV4, UFO, TCPV6, UDP_L4 = (consts.VNET_GSO_TCPV4, consts.VNET_GSO_UDP, consts.VNET_GSO_TCPV6,
                             consts.VNET_GSO_UDP_L4)


def vnet_hdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def vnet_fields(vnet):
    return struct.unpack("<BBHHHH", vnet)


def ether(n_tags=0):
    """An Ethernet header with `n_tags` tags (two: an 802.1ad tag outside an 802.1Q one)."""
    pkt = Ether(src=MAC_A, dst=MAC_B)
    tags = {0: [], 1: [Dot1Q(vlan=10)], 2: [Dot1AD(vlan=100), Dot1Q(vlan=10)]}[n_tags]
    for tag in tags:
        pkt = pkt / tag
    return pkt


def ip_layer(pkt):
    return pkt[IP] if IP in pkt else pkt[IPv6]


def l4_layer(pkt):
    return pkt[TCP] if TCP in pkt else pkt[UDP]


def pseudo_fold(pkt, l4_size):
    """The folded (not complemented) sum of the packet's pseudo-header, computed by scapy's checksum."""
    ip = ip_layer(pkt)
    proto = 6 if TCP in pkt else 17
    if IP in pkt:
        pseudo = socket.inet_aton(ip.src) + socket.inet_aton(ip.dst) + struct.pack("!xBH", proto, l4_size)
    else:
        pseudo = (socket.inet_pton(socket.AF_INET6, ip.src) + socket.inet_pton(socket.AF_INET6, ip.dst)
                  + struct.pack("!IxxxB", l4_size, proto))
    return ~scapy_checksum(pseudo) & 0xFFFF


def l4_offset(pkt):
    """Where the built packet's TCP/UDP header lies (also in a fragment, which scapy would not dissect)."""
    return len(bytes(pkt)) - len(bytes(l4_layer(pkt)))


def with_partial_checksum(pkt):
    """The frame as a stack with checksum offload sends it: the TCP/UDP checksum field holds only the folded
    pseudo-header sum. Returns (frame, L4 offset, checksum field offset in the L4 header)."""
    frame = bytearray(bytes(pkt))
    l4 = l4_offset(pkt)
    field = 16 if TCP in pkt else 6
    frame[l4 + field:l4 + field + 2] = struct.pack("!H", pseudo_fold(pkt, len(frame) - l4))
    return bytes(frame), l4, field


def l4_checksum_verifies(frame):
    """scapy's own pseudo-header sum over the TCP/UDP segment, its checksum included, says it is right."""
    pkt = Ether(frame)
    ip, l4 = ip_layer(pkt), l4_layer(pkt)
    proto = 6 if TCP in pkt else 17
    raw = bytes(l4)
    if Padding in pkt:                                   # Ethernet padding after the IP packet is not L4
        raw = raw[:-len(pkt[Padding])]
    if IP in pkt:
        return in4_chksum(proto, ip, raw) == 0
    return in6_chksum(proto, l4, raw) == 0               # l4: scapy looks under it for a routing header


def scapy_checksums(frame):
    """(IPv4 header checksum or None, TCP/UDP checksum) as scapy computes them for the frame's contents."""
    pkt = Ether(frame)
    if IP in pkt:
        del pkt[IP].chksum
    del l4_layer(pkt).chksum
    again = Ether(bytes(pkt))
    return (again[IP].chksum if IP in again else None), l4_layer(again).chksum


def assert_checksums_right(frame):
    pkt = Ether(frame)
    ip_sum, l4_sum = scapy_checksums(frame)
    if IP in pkt:
        assert pkt[IP].chksum == ip_sum
    got = l4_layer(pkt).chksum
    # scapy writes a TCP checksum that computes to 0 as 0; offload.c as 0xffff, the same in one's complement.
    assert got == l4_sum or (got == 0xFFFF and l4_sum == 0 and TCP in pkt), (hex(got), hex(l4_sum))
    assert l4_checksum_verifies(frame)


def segment(family, proto, n_tags=0, **ip_fields):
    """Ethernet (+ tags) / IPv4 or IPv6 / TCP or UDP, without payload."""
    ip = IP(src=IP4_A, dst=IP4_B, **ip_fields) if family == 4 else IPv6(src=IP6_A, dst=IP6_B, **ip_fields)
    return ether(n_tags) / ip / (TCP(sport=4000, dport=80) if proto == "tcp" else UDP(sport=4000, dport=53))


# -- receive: partial checksums recognised ---------------------------------------------------------------------

@IMPLS
@pytest.mark.parametrize("n_tags", [0, 1, 2])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("family", [4, 6])
def test_partial_checksum_is_recognised(impl, family, proto, n_tags):
    frame, l4, field = with_partial_checksum(segment(family, proto, n_tags) / (b"p" * 301))
    assert l4 == 14 + 4 * n_tags + (20 if family == 4 else 40)
    vnet = impl.offload_rx_csum(frame)
    assert vnet_fields(vnet) == (NEEDS_CSUM, 0, 0, 0, l4, field)
    assert_checksums_right(impl.offload_csum(frame, vnet))


@IMPLS
def test_recognised_behind_ipv4_options(impl):
    frame, l4, field = with_partial_checksum(segment(4, "tcp", options=b"\x94\x04\x00\x00") / b"x")
    assert l4 == 14 + 24
    assert vnet_fields(impl.offload_rx_csum(frame)) == (NEEDS_CSUM, 0, 0, 0, l4, field)


@IMPLS
def test_recognition_keeps_the_other_vnet_fields(impl):
    frame, l4, field = with_partial_checksum(segment(4, "udp") / b"x")
    vnet = impl.offload_rx_csum(frame, vnet_hdr(2, 0x81, 54, 1448, 7, 9))
    assert vnet_fields(vnet) == (2 | NEEDS_CSUM, 0x81, 54, 1448, l4, field)


@IMPLS
@pytest.mark.parametrize("family", [4, 6])
def test_complete_checksum_is_not_marked(impl, family):
    frame = bytes(segment(family, "tcp") / b"already complete")
    assert l4_checksum_verifies(frame)
    assert impl.offload_rx_csum(frame) == bytes(10)


def partial(pkt):
    return with_partial_checksum(pkt)[0]


LEFT_ALONE = {
    "ipv4 first fragment": partial(segment(4, "udp", flags="MF") / (b"x" * 40)),
    "ipv4 later fragment": partial(segment(4, "tcp", frag=10) / (b"x" * 40)),
    "ipv6 hop-by-hop": partial(ether() / IPv6(src=IP6_A, dst=IP6_B) / IPv6ExtHdrHopByHop() / TCP() / b"x"),
    "ipv6 routing": partial(ether() / IPv6(src=IP6_A, dst=IP6_B) / IPv6ExtHdrRouting() / UDP() / b"x"),
    "ipv6 fragment": partial(ether() / IPv6(src=IP6_A, dst=IP6_B) / IPv6ExtHdrFragment() / UDP() / b"x"),
    "ipv6 destination options": partial(ether() / IPv6(src=IP6_A, dst=IP6_B) / IPv6ExtHdrDestOpt() / TCP()),
    "three tags": partial(ether(2) / Dot1Q(vlan=3) / IP(src=IP4_A, dst=IP4_B) / UDP() / b"x"),
    "icmp": bytes(ether() / IP(src=IP4_A, dst=IP4_B) / ICMP()),
    "arp": bytes(ether() / ARP()),
    "runt": bytes(13),
}


@IMPLS
@pytest.mark.parametrize("name", sorted(LEFT_ALONE))
def test_left_alone(impl, name):
    assert impl.offload_rx_csum(LEFT_ALONE[name]) == bytes(10)


@IMPLS
def test_lying_lengths_are_left_alone(impl):
    frame = bytearray(partial(segment(4, "tcp") / (b"x" * 20)))
    assert impl.offload_rx_csum(bytes(frame)) != bytes(10)
    assert impl.offload_rx_csum(bytes(frame[:-1])) == bytes(10)          # the IP packet is longer than the frame
    short = bytearray(partial(segment(4, "tcp")))
    struct.pack_into("!H", short, 14 + 2, 20 + 19)                       # a TCP header of 19 bytes
    assert impl.offload_rx_csum(bytes(short)) == bytes(10)
    six = bytearray(partial(segment(6, "udp") / b"x"))
    struct.pack_into("!H", six, 14 + 4, len(six) - 14 - 40 + 1)          # payload length beyond the frame
    assert impl.offload_rx_csum(bytes(six)) == bytes(10)


def chance_partial(pkt):
    """`pkt` / two bytes chosen so that its complete TCP/UDP checksum equals its pseudo-header's folded sum: a
    complete checksum that looks partial, which happens by chance once in 65536 frames."""
    frame, l4, field = with_partial_checksum(pkt / b"\x00\x00")
    target = ~pseudo_fold(pkt / b"\x00\x00", len(frame) - l4) & 0xFFFF       # the L4 words must fold to this
    words = bytes(frame[l4:]) + b"\0" * ((len(frame) - l4) % 2)
    folded = ~scapy_checksum(words) & 0xFFFF
    adjust = (target - folded) % 0xFFFF
    return frame[:-2] + struct.pack("!H", adjust)


@IMPLS
def test_bytes_after_the_ip_packet_are_never_marked(impl):
    """Completion sums to the frame's end, so a frame with Ethernet padding must not be marked: a stack's partial
    checksum is never padded, and a complete checksum that looks partial by chance would be broken by padding."""
    frame = chance_partial(segment(4, "tcp") / b"abcdefgh")
    assert l4_checksum_verifies(frame) and impl.offload_rx_csum(frame) != bytes(10)
    padded = frame + b"\x12\x34"
    assert l4_checksum_verifies(padded) and impl.offload_rx_csum(padded) == bytes(10)
    assert impl.offload_rx_csum(partial(segment(6, "udp") / b"x") + bytes(4)) == bytes(10)


# -- transmit: completion ------------------------------------------------------------------------------------

def zero_sum_payload(pkt):
    """A two-byte payload that makes the completed checksum of `pkt / payload` compute to 0."""
    frame, l4, field = with_partial_checksum(pkt / b"\x00\x00")
    words = bytes(frame[l4:])
    total = sum(struct.unpack(f"!{len(words) // 2}H", words + b"\0" * (len(words) % 2)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return struct.pack("!H", 0xFFFF - total if total != 0xFFFF else 0)


@IMPLS
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_checksum_of_zero_is_stored_as_ffff(impl, proto):
    pkt = segment(4, proto) / b"abcdefgh"
    frame, l4, field = with_partial_checksum(pkt / zero_sum_payload(pkt))
    done = impl.offload_csum(frame, vnet_hdr(NEEDS_CSUM, csum_start=l4, csum_offset=field))
    assert done[l4 + field:l4 + field + 2] == b"\xff\xff"      # for UDP, 0 would mean "no checksum" (RFC 768)
    assert_checksums_right(done)


@IMPLS
def test_completion_sums_from_csum_start_to_the_end(impl):
    frame = bytes(range(60))
    done = impl.offload_csum(frame, vnet_hdr(NEEDS_CSUM, csum_start=21, csum_offset=7))
    rest = bytearray(frame[21:])
    expected = scapy_checksum(bytes(rest)) or 0xFFFF
    assert done == frame[:28] + struct.pack("!H", expected) + frame[30:]


@IMPLS
def test_completion_refuses_a_field_outside_the_frame(impl):
    frame = bytes(60)
    assert impl.offload_csum(frame, vnet_hdr(NEEDS_CSUM, csum_start=50, csum_offset=8))[58:] == b"\xff\xff"
    for start, offset in [(50, 9), (60, 0), (0xFFFF, 0xFFFF)]:
        with pytest.raises(OSError) as exc:
            impl.offload_csum(frame, vnet_hdr(NEEDS_CSUM, csum_start=start, csum_offset=offset))
        assert exc.value.errno == errno.EINVAL


# -- transmit: segmentation ---------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 16 + b"tail"       # 4100 bytes


def cut(impl, pkt, gso_type, mss):
    frame, l4, field = with_partial_checksum(pkt)
    vnet = vnet_hdr(NEEDS_CSUM, gso_type, 0, mss, l4, field)
    segments = impl.gso_segments(frame, vnet)
    assert len(segments) == impl.gso_plan(frame, vnet).n_segs
    for s in segments:
        assert_checksums_right(s)
    return [Ether(s) for s in segments]


def payload_of(seg):
    return bytes(l4_layer(seg).payload)


@IMPLS
@pytest.mark.parametrize("n_tags", [0, 1])
def test_tcpv4(impl, n_tags):
    pkt = (ether(n_tags) / IP(src=IP4_A, dst=IP4_B, id=100, flags="DF")
           / TCP(sport=4000, dport=80, seq=1000, flags="FPAC", options=[("NOP", None), ("NOP", None),
                                                                         ("Timestamp", (1, 2))]) / PAYLOAD)
    segs = cut(impl, pkt, TCPV4, 1448)
    assert [len(payload_of(s)) for s in segs] == [1448, 1448, 1204]
    assert b"".join(payload_of(s) for s in segs) == PAYLOAD
    assert [s[IP].id for s in segs] == [100, 101, 102]
    assert all(s[IP].len == len(bytes(s[IP])) and s[IP].flags == "DF" for s in segs)
    assert [s[TCP].seq for s in segs] == [1000, 2448, 3896]
    assert [str(s[TCP].flags) for s in segs] == ["AC", "A", "FPA"]      # CWR first, FIN and PSH last
    assert all(s[TCP].options == pkt[TCP].options for s in segs)
    if n_tags:
        assert all(s[Dot1Q].vlan == 10 for s in segs)


@IMPLS
def test_tcpv4_with_ip_options_ids_and_sequence_numbers_wrapping(impl):
    pkt = (ether() / IP(src=IP4_A, dst=IP4_B, id=0xFFFF, options=b"\x94\x04\x00\x00")
           / TCP(seq=0xFFFFFF00, flags="A") / (b"z" * 600))
    segs = cut(impl, pkt, TCPV4 | consts.VNET_GSO_ECN, 200)
    assert [s[IP].id for s in segs] == [0xFFFF, 0, 1]
    assert [s[TCP].seq for s in segs] == [0xFFFFFF00, 0xFFFFFFC8, 0x90]
    assert all(bytes(s[IP])[20:24] == b"\x94\x04\x00\x00" and s[IP].ihl == 6 for s in segs)


@IMPLS
def test_tcpv6(impl):
    pkt = ether() / IPv6(src=IP6_A, dst=IP6_B) / TCP(sport=4000, dport=80, seq=7, flags="PAC") / PAYLOAD
    segs = cut(impl, pkt, TCPV6, 1428)
    assert [len(payload_of(s)) for s in segs] == [1428, 1428, 1244]
    assert b"".join(payload_of(s) for s in segs) == PAYLOAD
    assert all(s[IPv6].plen == len(bytes(s[IPv6].payload)) for s in segs)
    assert [s[TCP].seq for s in segs] == [7, 1435, 2863]
    assert [str(s[TCP].flags) for s in segs] == ["AC", "A", "PA"]


@IMPLS
def test_tcpv6_behind_extension_headers(impl):
    pkt = (ether(1) / IPv6(src=IP6_A, dst=IP6_B) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
           / TCP(seq=1, flags="A") / (b"e" * 1000))
    segs = cut(impl, pkt, TCPV6, 400)
    assert [len(payload_of(s)) for s in segs] == [400, 400, 200]
    assert all(s[IPv6].plen == 16 + 20 + len(payload_of(s)) for s in segs)
    assert all(IPv6ExtHdrHopByHop in s and IPv6ExtHdrDestOpt in s for s in segs)


@IMPLS
@pytest.mark.parametrize("family", [4, 6])
def test_udp_l4(impl, family):
    pkt = segment(family, "udp", id=40) if family == 4 else segment(family, "udp")
    segs = cut(impl, pkt / PAYLOAD, UDP_L4, 1400)
    assert [len(payload_of(s)) for s in segs] == [1400, 1400, 1300]
    assert b"".join(payload_of(s) for s in segs) == PAYLOAD
    assert all(s[UDP].len == 8 + len(payload_of(s)) for s in segs)
    if family == 4:
        assert [s[IP].id for s in segs] == [40, 41, 42]                 # each segment is a datagram of its own
        assert all(s[IP].len == len(bytes(s[IP])) and s[IP].frag == 0 and s[IP].flags == 0 for s in segs)
    else:
        assert all(s[IPv6].plen == s[UDP].len for s in segs)


@IMPLS
def test_udp_segment_checksum_of_zero_is_ffff(impl):
    pkt = segment(4, "udp") / b"abcdefgh"
    pkt = pkt / zero_sum_payload(pkt)
    frame, l4, field = with_partial_checksum(pkt)
    (seg,) = impl.gso_segments(frame, vnet_hdr(NEEDS_CSUM, UDP_L4, 0, 1000, l4, field))
    assert seg[l4 + 6:l4 + 8] == b"\xff\xff"
    assert_checksums_right(seg)


@IMPLS
@pytest.mark.parametrize("size, mss, lengths", [(3000, 1000, [1000, 1000, 1000]), (999, 1000, [999]),
                                                (0, 1000, [0]), (5, 1, [1] * 5)])
def test_segment_lengths(impl, size, mss, lengths):
    pkt = ether() / IP(src=IP4_A, dst=IP4_B) / TCP(flags="FPAC") / (b"s" * size)
    segs = cut(impl, pkt, TCPV4, mss)
    assert [len(payload_of(s)) for s in segs] == lengths
    if len(segs) == 1:
        assert str(segs[0][TCP].flags) == "FPAC"             # the only segment is both the first and the last


@IMPLS
def test_the_frame_length_not_the_ip_length_says_how_much_payload(impl):
    """As in the kernel, whose GSO goes by the socket buffer's length and writes each segment's IP length."""
    frame, l4, field = with_partial_checksum(segment(4, "tcp") / (b"q" * 100))
    short_ip = bytearray(frame)
    struct.pack_into("!H", short_ip, 14 + 2, 40 + 10)
    segs = impl.gso_segments(bytes(short_ip), vnet_hdr(NEEDS_CSUM, TCPV4, 0, 60, l4, field))
    assert [len(payload_of(Ether(s))) for s in segs] == [60, 40]


@IMPLS
@pytest.mark.parametrize("gso_type", [0, UFO, UFO | consts.VNET_GSO_ECN, 2, 6, 0x7F])
def test_ufo_and_unknown_types_are_refused(impl, gso_type):
    frame, l4, field = with_partial_checksum(segment(4, "udp") / PAYLOAD)
    with pytest.raises(OSError) as exc:
        impl.gso_segments(frame, vnet_hdr(NEEDS_CSUM, gso_type, 0, 1400, l4, field))
    assert exc.value.errno == errno.EOPNOTSUPP


def truncated(pkt, n):
    return bytes(pkt)[:n]


LYING_GSO = {  # name: (frame, gso_type)
    "tcpv4 on ipv6": (bytes(segment(6, "tcp") / PAYLOAD), TCPV4),
    "tcpv6 on ipv4": (bytes(segment(4, "tcp") / PAYLOAD), TCPV6),
    "tcpv4 on udp": (bytes(segment(4, "udp") / PAYLOAD), TCPV4),
    "udp_l4 on tcp": (bytes(segment(6, "tcp") / PAYLOAD), UDP_L4),
    "udp_l4 on icmp": (bytes(ether() / IP(src=IP4_A, dst=IP4_B) / ICMP() / PAYLOAD), UDP_L4),
    "ipv4 fragment": (bytes(segment(4, "udp", flags="MF") / PAYLOAD), UDP_L4),
    "ipv6 fragment": (bytes(ether() / IPv6(src=IP6_A, dst=IP6_B) / IPv6ExtHdrFragment(m=1) / UDP() / PAYLOAD),
                      UDP_L4),
    "arp": (bytes(ether() / ARP()), TCPV4),
    "truncated tcp header": (truncated(segment(4, "tcp"), 14 + 20 + 19), TCPV4),
    "ip length beyond the frame": (truncated(segment(4, "tcp") / PAYLOAD, 100), TCPV4),
    "three tags": (bytes(ether(2) / Dot1Q() / IP(src=IP4_A, dst=IP4_B) / TCP() / PAYLOAD), TCPV4),
}


@IMPLS
@pytest.mark.parametrize("name", sorted(LYING_GSO) + ["gso_size 0"])
def test_lying_frames_are_refused(impl, name):
    frame, gso_type = LYING_GSO.get(name, (bytes(segment(4, "tcp") / PAYLOAD), TCPV4))
    mss = 0 if name == "gso_size 0" else 1000
    with pytest.raises(OSError) as exc:
        impl.gso_segments(frame, vnet_hdr(NEEDS_CSUM, gso_type, 0, mss, 34, 16))
    assert exc.value.errno == errno.EINVAL


@IMPLS
@pytest.mark.parametrize("family, largest_ok", [(4, 65535 - 40), (6, 65535 - 20)])
def test_a_segment_longer_than_its_ip_length_can_say_is_refused(impl, family, largest_ok):
    pkt = segment(family, "tcp", **{"len" if family == 4 else "plen": 0xFFFF}) / (b"L" * 65535)
    frame, l4, field = bytes(pkt), l4_offset(pkt), 16             # the IP length is at most 0xffff: a lie
    first = impl.gso_segments(frame, vnet_hdr(NEEDS_CSUM, TCPV4 if family == 4 else TCPV6, 0, largest_ok, l4,
                                              field))[0]
    assert len(first) == l4 + 20 + largest_ok
    assert_checksums_right(first)
    with pytest.raises(OSError) as exc:
        impl.gso_plan(frame, vnet_hdr(NEEDS_CSUM, TCPV4 if family == 4 else TCPV6, 0, largest_ok + 1, l4, field))
    assert exc.value.errno == errno.EINVAL


AH_HDR = bytes([6, 4, 0, 0]) + bytes(4) + bytes(4) + bytes(12)     # next header TCP, 24 bytes, a zero ICV
ELSEWHERE = {  # name: (packet, gso type)
    "ipv4 loose source route": (IP(src=IP4_A, dst=IP4_B, options=[IPOption_LSRR(routers=["203.0.113.9"])])
                                / TCP(), TCPV4),
    "ipv4 strict source route": (IP(src=IP4_A, dst=IP4_B, options=[IPOption_SSRR(routers=["203.0.113.9"])])
                                 / UDP(), UDP_L4),
    "ipv6 routing header with segments left": (IPv6(src=IP6_A, dst=IP6_B)
                                               / IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=1) / TCP(),
                                               TCPV6),
    "ipv6 authentication header": (IPv6(src=IP6_A, dst=IP6_B, nh=51) / Raw(AH_HDR + bytes(TCP(flags="A"))),
                                   TCPV6),
    "ipv6 atomic fragment": (IPv6(src=IP6_A, dst=IP6_B) / IPv6ExtHdrFragment() / UDP(), UDP_L4),
}


@IMPLS
@pytest.mark.parametrize("name", sorted(ELSEWHERE))
def test_frames_whose_segments_cannot_be_made_right_are_refused(impl, name):
    """A source route or a routing header with segments left puts the pseudo-header's destination elsewhere than
    the IP header (RFC 9293 3.1, RFC 8200 8.1): checksums from the header's addresses would be wrong. An AH's ICV
    covers the whole packet, and the kernel's GSO takes neither it nor a fragment header."""
    pkt, gso_type = ELSEWHERE[name]
    frame = bytes(ether() / pkt / (b"r" * 3000))
    with pytest.raises(OSError) as exc:
        impl.gso_plan(frame, vnet_hdr(NEEDS_CSUM, gso_type, 0, 1000, 0, 0))
    assert exc.value.errno == errno.EOPNOTSUPP


@IMPLS
def test_a_routing_header_without_segments_left_is_carried(impl):
    pkt = (ether() / IPv6(src=IP6_A, dst=IP6_B) / IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=0)
           / TCP(flags="A") / (b"r" * 3000))
    segs = cut(impl, pkt, TCPV6, 1000)
    assert len(segs) == 3 and all(s[IPv6ExtHdrRouting].addresses == ["2001:db8::99"] for s in segs)


@IMPLS
def test_tcp_data_offset_beyond_the_frame_is_refused(impl):
    frame = bytearray(bytes(segment(4, "tcp")))
    frame[14 + 20 + 12] = 0xF0                                   # 60 bytes of TCP header in a 20-byte segment
    with pytest.raises(OSError) as exc:
        impl.gso_plan(bytes(frame), vnet_hdr(NEEDS_CSUM, TCPV4, 0, 1000, 34, 16))
    assert exc.value.errno == errno.EINVAL


# -- differential: C and twin agree on everything ---------------------------------------------------------------

SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))


def outcome(fn, *args):
    """What a call answers: its result, or the errno it refused with."""
    try:
        return fn(*args)
    except OSError as exc:
        return ("refused", exc.errno)


def both(name, *args):
    c = outcome(getattr(fastpath, name), *args)
    py = outcome(getattr(refpath, name), *args)
    assert c == py, f"{name}{tuple(a.hex() if isinstance(a, bytes) else a for a in args)}\nC:  {c}\npy: {py}"
    return py


LSRR_OPTION = bytes(IP(options=[IPOption_LSRR(routers=["203.0.113.9"])]))[20:28]


@st.composite
def offload_frames(draw):
    """TCP/UDP over IPv4/IPv6 behind 0..2 tags, with IP and TCP options, IPv6 extension headers, payloads of any
    size up to a few segments; the checksum field partial (usually), complete or anything."""
    family = draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from(["tcp", "udp"]))
    pkt = ether(draw(st.integers(0, 2)))
    if family == 4:
        pkt = pkt / IP(src=draw(st.sampled_from([IP4_A, "203.0.113.77"])), dst=IP4_B,
                       id=draw(st.integers(0, 0xFFFF)), flags=draw(st.sampled_from([0, 0, 0, "DF", "MF"])),
                       frag=draw(st.sampled_from([0] * 7 + [3])),
                       options=draw(st.sampled_from([b"", b"", b"", b"", b"\x94\x04\x00\x00", b"\x01" * 8,
                                                     LSRR_OPTION, b"\x01\x89\x01\x00", b"\x07\x01\x89\x00"])))
    else:
        pkt = pkt / IPv6(src=draw(st.sampled_from([IP6_A, "2001:db8:ffff::9"])), dst=IP6_B)
        if draw(st.integers(0, 3)) == 0:
            for ext in draw(st.lists(st.sampled_from(["hbh", "dst", "rt", "rt", "frag"]), min_size=1, max_size=2)):
                if ext == "rt":
                    pkt = pkt / IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=draw(st.integers(0, 1)))
                else:
                    pkt = pkt / {"hbh": IPv6ExtHdrHopByHop, "dst": IPv6ExtHdrDestOpt, "frag": IPv6ExtHdrFragment}[ext]()
    if proto == "tcp":
        opts = draw(st.sampled_from([[], [("MSS", 1460)], [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]]))
        pkt = pkt / TCP(seq=draw(st.integers(0, 0xFFFFFFFF)), flags=draw(st.integers(0, 0xFFF)), options=opts)
    else:
        pkt = pkt / UDP(sport=draw(st.integers(0, 0xFFFF)))
    pkt = pkt / draw(st.binary(max_size=24).map(lambda b: b * draw(st.integers(1, 40))))
    frame = bytearray(bytes(pkt))
    l4 = l4_offset(pkt)
    field = l4 + (16 if proto == "tcp" else 6)
    how = draw(st.sampled_from(["partial", "partial", "partial", "complete", "any"]))
    if how == "partial":
        frame[field:field + 2] = struct.pack("!H", pseudo_fold(pkt, len(frame) - l4))
    elif how == "any":
        frame[field:field + 2] = draw(st.binary(min_size=2, max_size=2))
    if draw(st.integers(0, 4)) == 0:
        frame += bytes(draw(st.integers(1, 8))) if draw(st.booleans()) else draw(st.binary(min_size=1, max_size=8))
    return bytes(frame)


@st.composite
def mutated(draw, frames):
    """A frame with 1..3 lies told by its length fields (test_differential's LYING) or random bytes, or cut."""
    frame = bytearray(draw(frames))
    for _ in range(draw(st.integers(1, 3))):
        name, offset, fmt, values = draw(st.sampled_from(LYING))
        at = draw(st.sampled_from([14, 18, 22])) + offset
        if name == "random":
            at = draw(st.integers(0, max(len(frame) - 1, 0)))
        if at + struct.calcsize(fmt) <= len(frame):
            struct.pack_into(fmt, frame, at, draw(values))
    if draw(st.integers(0, 3)) == 0:
        frame = frame[:draw(st.integers(0, len(frame)))]
    return bytes(frame)


all_frames = st.one_of(offload_frames(), offload_frames(), mutated(offload_frames()), mutated(valid_frames()),
                       st.binary(max_size=120))
_GSO_TYPE_OF = {(consts.ETH_TYPE_IPV4, 6): TCPV4, (consts.ETH_TYPE_IPV6, 6): TCPV6,
                (consts.ETH_TYPE_IPV4, 17): UDP_L4, (consts.ETH_TYPE_IPV6, 17): UDP_L4}


@st.composite
def offload_vnets(draw, frame):
    """vnet headers as a transmitting port meets them: mostly the GSO type the frame is (else another, UFO or an
    unknown one), segment sizes from 0 to beyond the payload, csum_start/offset at the L4 checksum, near it or
    anywhere; sometimes 10 random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=10, max_size=10))
    parsed = fastpath.parse(frame, is_gso=True)
    key = FlowKey.unpack(parsed.key)
    l4 = parsed.l4_ofs
    right = _GSO_TYPE_OF.get((key.eth_type, key.nw_proto), TCPV4)
    if draw(st.integers(0, 3)):
        gso_type = right | draw(st.sampled_from([0, consts.VNET_GSO_ECN]))
    else:
        gso_type = draw(st.sampled_from([TCPV4, TCPV6, UDP_L4, UFO, 0, 2, 0x7F]))
    payload = max(len(frame) - l4 - 20, 1)
    gso_size = draw(st.sampled_from([payload // 3 + 1, payload // 2 + 1, payload, payload + 1, 1, 536, 0xFFFF, 0])
                    | st.integers(1, 300))
    start = draw(st.sampled_from([l4, l4, l4, l4 + 1, max(l4 - 2, 0), len(frame)]) | st.integers(0, 0xFFFF))
    offset = draw(st.sampled_from([16 if key.nw_proto == 6 else 6] * 3 + [0, 1]) | st.integers(0, 0xFFFF))
    return vnet_hdr(draw(st.sampled_from([0, 1, 1, 3])), gso_type, draw(st.integers(0, 0xFFFF)), gso_size, start,
                    offset)


@SETTINGS
@given(all_frames, st.data())
def test_c_and_twin_agree(frame, data):
    vnet = data.draw(offload_vnets(frame))
    both("offload_rx_csum", frame, vnet)
    both("offload_rx_csum", frame, None)
    both("offload_csum", frame, vnet)
    plan = both("gso_plan", frame, vnet)
    if isinstance(plan, tuple) and plan and plan[0] == "refused":
        return
    if plan.n_segs <= 4096:
        both("gso_segments", frame, vnet)


@SETTINGS
@given(mutated(offload_frames()))
def test_recognised_then_completed_agree(frame):
    """What the receive side marks, the transmit side completes alike (the afxdp -> afxdp path)."""
    vnet = both("offload_rx_csum", frame, None)
    if vnet != bytes(10):
        both("offload_csum", frame, vnet)
