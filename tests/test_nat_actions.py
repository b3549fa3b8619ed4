"""The NAT rewrites SET_IPV4_SRC/DST and SET_TP_SRC/DST (docs/DATAPATH.md "NAT rewrites").

Every case runs four ways: `actions_apply` of C and of the twin, and whole datapaths (C and twin) with memory ports.
In full mode the incremental checksums must equal what scapy computes from scratch for the rewritten packet; in
partial mode (vnet NEEDS_CSUM, csum_start at L4) the L4 checksum field must hold the pseudo-header sum of the
rewritten packet, as Linux would have left it there.
"""
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from pyswitch import actions as A, consts, fastpath, refpath

CLIENT, VIP, BACKEND, OTHER = "192.0.2.10", "198.51.100.1", "10.0.0.7", "203.0.113.99"
OUT = 1                                   # the port every case outputs to
VNET_NONE = bytes(10)


def vnet_hdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


# -- the four ways to run an action list ----------------------------------------------------------------------------

class ApplyRunner:
    def __init__(self, impl):
        self.impl = impl

    def run(self, frame, vnet, actions):
        """{port: [(frame, vnet), ...]} for the outputs of `actions`."""
        out = {}
        for o in self.impl.actions_apply(bytes(frame), vnet, 0, actions):
            out.setdefault(o.port, []).append((o.frame, o.vnet))
        return out

    def close(self):
        pass


class DatapathRunner:
    """Frames that parse go through a flow (inject + run); those that do not through execute()."""

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
            self.dp.execute(0, bytes(frame), vnet, actions)
        out = {}
        for p in range(4):
            taken = self.dp.take(p)
            if taken:
                out[p] = taken
        return out

    def close(self):
        self.dp.close()


RUNNERS = {"c-apply": lambda: ApplyRunner(fastpath), "py-apply": lambda: ApplyRunner(refpath),
           "c-dp": lambda: DatapathRunner(fastpath), "py-dp": lambda: DatapathRunner(refpath)}


@pytest.fixture(params=list(RUNNERS))
def runner(request):
    r = RUNNERS[request.param]()
    yield r
    r.close()


def rewrite(runner, frame, actions, vnet=VNET_NONE):
    """The single output of `actions` + OUTPUT: (frame, vnet)."""
    out = runner.run(bytes(frame), vnet, list(actions) + [A.output(OUT)])
    assert list(out) == [OUT] and len(out[OUT]) == 1
    return out[OUT][0]


# -- packets and what scapy makes of them ---------------------------------------------------------------------------

def packet(l4="tcp", tags=(), options=b"", frag=0, mf=False, udp_csum=None, payload=b"hello, world"):
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for i, vid in enumerate(tags):
        eth = eth / (Dot1AD(vlan=vid) if i == 0 and len(tags) == 2 else Dot1Q(vlan=vid))
    ip = IP(src=CLIENT, dst=VIP, ttl=64, id=0x1234, options=options, frag=frag, flags="MF" if mf else 0)
    if l4 == "tcp":
        top = TCP(sport=40000, dport=80, seq=1, ack=2, flags="PA", options=[("MSS", 1460)]) / payload
    elif l4 == "udp":
        top = UDP(sport=40000, dport=53) / payload
        if udp_csum is not None:
            top.chksum = udp_csum
    else:
        top = ICMP(type=8, id=7, seq=1) / payload
    pkt = eth / ip / top
    return Ether(bytes(pkt))


def later_fragment(tags=()):
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for vid in tags:
        eth = eth / Dot1Q(vlan=vid)
    # 16 bytes that look like a TCP header's start: ports must not move in a later fragment.
    return Ether(bytes(eth / IP(src=CLIENT, dst=VIP, proto=6, frag=100) / Raw(bytes(range(40)))))


FIELDS = {   # name: (action, scapy layer field, new value)
    "ipv4_src": (A.set_ipv4_src(OTHER), "src", OTHER),
    "ipv4_dst": (A.set_ipv4_dst(BACKEND), "dst", BACKEND),
    "tp_src": (A.set_tp_src(12345), "sport", 12345),
    "tp_dst": (A.set_tp_dst(8080), "dport", 8080),
}


def l4_layer(pkt):
    ip = pkt[IP]
    if ip.frag != 0:
        return None
    for layer in (TCP, UDP):
        if layer in ip:
            return ip[layer]
    return None


def expected(pkt, fields):
    """`pkt` with `fields` rewritten and every checksum scapy recomputes from scratch (UDP 0 stays 0)."""
    pkt = Ether(bytes(pkt))
    ip, l4 = pkt[IP], l4_layer(pkt)
    for name in fields:
        _act, attr, value = FIELDS[name]
        if attr in ("src", "dst"):
            setattr(ip, attr, value)
            del ip.chksum
        if l4 is not None:
            if attr in ("sport", "dport"):
                setattr(l4, attr, value)
            if l4.chksum != 0 or isinstance(l4, TCP):
                del l4.chksum
    return bytes(pkt)


def rewritten(pkt, **fields):
    """`pkt` (TCP or UDP) with IP/L4 `fields` set and both checksums recomputed by scapy."""
    pkt = Ether(bytes(pkt))
    for name, value in fields.items():
        setattr(pkt[IP] if name in ("src", "dst") else l4_layer(pkt), name, value)
    del pkt[IP].chksum
    del l4_layer(pkt).chksum
    return pkt


FULL_CASES = {
    "tcp": packet("tcp"),
    "tcp-vlan": packet("tcp", tags=(10,)),
    "tcp-qinq": packet("tcp", tags=(100, 10)),
    "tcp-ip-options": packet("tcp", options=b"\x94\x04\x00\x00"),
    "tcp-first-fragment": packet("tcp", mf=True),
    "udp": packet("udp"),
    "udp-vlan-options": packet("udp", tags=(20,), options=b"\x01" * 8),
    "udp-no-checksum": packet("udp", udp_csum=0),
    "udp-first-fragment": packet("udp", mf=True),
    "icmp": packet("icmp"),
    "icmp-qinq": packet("icmp", tags=(100, 10)),
    "later-fragment": later_fragment(),
    "later-fragment-vlan": later_fragment(tags=(10,)),
}
FIELD_SETS = [("ipv4_src",), ("ipv4_dst",), ("tp_src",), ("tp_dst",), ("ipv4_src", "ipv4_dst", "tp_src", "tp_dst")]


@pytest.mark.parametrize("case", list(FULL_CASES))
@pytest.mark.parametrize("fields", FIELD_SETS, ids="+".join)
def test_full_mode_equals_scapy_recomputation(runner, case, fields):
    pkt = FULL_CASES[case]
    out, vnet = rewrite(runner, pkt, [FIELDS[f][0] for f in fields])
    assert out == expected(pkt, fields)
    assert vnet == VNET_NONE


def test_udp_without_checksum_stays_without(runner):
    out, _ = rewrite(runner, packet("udp", udp_csum=0), [A.set_ipv4_dst(BACKEND), A.set_tp_dst(5353)])
    assert Ether(out)[UDP].chksum == 0


def test_udp_result_zero_is_sent_as_ffff(runner):
    """A rewrite whose checksum comes out 0 stores 0xFFFF (RFC 768): find a port that does it."""
    pkt = packet("udp")
    check = pkt[UDP].chksum
    # csum_update16(check, sport, p) == 0 when the sum ~check + ~sport + p folds to 0xFFFF.
    port = (0xFFFF - ((~check & 0xFFFF) + (~pkt[UDP].sport & 0xFFFF)) % 0xFFFF) % 0xFFFF
    assert refpath.csum_update16(check, pkt[UDP].sport, port) == 0
    out, _ = rewrite(runner, pkt, [A.set_tp_src(port)])
    assert Ether(out)[UDP].chksum == 0xFFFF
    assert out == bytes(rewritten(pkt, sport=port))


# -- partial mode ---------------------------------------------------------------------------------------------------

def ones_sum(data):
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo_sum(pkt):
    """What Linux leaves in the L4 checksum field of a CHECKSUM_PARTIAL packet: the pseudo-header sum, folded and
    not complemented (~csum_tcpudp_magic(src, dst, len, proto, 0))."""
    ip = pkt[IP]
    ip_raw = bytes(ip)
    ihl = (ip_raw[0] & 0xF) * 4
    l4_len = ip.len - ihl
    return ones_sum(ip_raw[12:20] + struct.pack("!HH", ip.proto, l4_len))


def l4_offset(frame):
    res = refpath.parse(frame, 0)
    assert res.l4_ofs
    return res.l4_ofs


def as_partial(pkt, gso=False):
    """`pkt` as a guest hands it over for checksum offload: (frame, vnet)."""
    pkt = Ether(bytes(pkt))
    layer = l4_layer(pkt)
    layer.chksum = pseudo_sum(pkt)
    frame = bytes(pkt)
    l4 = l4_offset(frame)
    csum_offset = 16 if isinstance(layer, TCP) else 6
    if gso:
        vnet = vnet_hdr(1, 1 if isinstance(layer, TCP) else 5, l4 + 32, 1000, l4, csum_offset)
    else:
        vnet = vnet_hdr(1, 0, 0, 0, l4, csum_offset)
    return frame, vnet


def complete(frame, vnet):
    """What the kernel does with a partial frame: sum from csum_start to the end of the IP packet, store at
    csum_start + csum_offset. Returns the checksum it stores."""
    ip = Ether(frame)[IP]
    start = struct.unpack_from("<H", vnet, 6)[0]
    end = start + ip.len - ip.ihl * 4
    return ~ones_sum(frame[start:end]) & 0xFFFF


PARTIAL_CASES = {
    "tcp": packet("tcp"),
    "tcp-qinq-options": packet("tcp", tags=(100, 10), options=b"\x94\x04\x00\x00"),
    "udp": packet("udp"),
    "udp-vlan": packet("udp", tags=(10,)),
}


@pytest.mark.parametrize("gso", [False, True], ids=["csum", "gso"])
@pytest.mark.parametrize("case", list(PARTIAL_CASES))
@pytest.mark.parametrize("fields", FIELD_SETS, ids="+".join)
def test_partial_mode_keeps_the_pseudo_header_sum(runner, case, fields, gso):
    pkt = PARTIAL_CASES[case]
    frame, vnet = as_partial(pkt, gso)
    out, out_vnet = rewrite(runner, frame, [FIELDS[f][0] for f in fields], vnet)
    assert out_vnet == vnet
    got = Ether(out)
    want = Ether(expected(pkt, fields))
    # The L4 checksum field holds the pseudo-header sum of the rewritten packet; everything else is scapy's.
    assert l4_layer(got).chksum == pseudo_sum(want)
    l4_layer(want).chksum = pseudo_sum(want)
    assert out == bytes(want)
    # And the kernel, finishing the sum, gets the checksum scapy computes for the whole packet.
    full = l4_layer(Ether(expected(pkt, fields))).chksum
    assert complete(out, out_vnet) == full or (full == 0xFFFF and complete(out, out_vnet) == 0)


@pytest.mark.parametrize("where", [-2, 2, 20])
def test_needs_csum_elsewhere_is_full_mode(runner, where):
    """NEEDS_CSUM with csum_start anywhere but L4 is not a partial L4 checksum: the field is a full checksum."""
    pkt = packet("tcp")
    frame = bytes(pkt)
    vnet = vnet_hdr(1, 0, 0, 0, l4_offset(frame) + where, 16)
    fields = ("ipv4_dst", "tp_dst")
    out, out_vnet = rewrite(runner, frame, [FIELDS[f][0] for f in fields], vnet)
    assert out == expected(pkt, fields) and out_vnet == vnet


def test_icmp_partial_vnet_changes_only_the_ip_header(runner):
    pkt = packet("icmp")
    frame = bytes(pkt)
    vnet = vnet_hdr(1, 0, 0, 0, l4_offset(frame), 2)
    out, _ = rewrite(runner, frame, [A.set_ipv4_src(OTHER), A.set_tp_src(1)], vnet)
    assert out == expected(pkt, ("ipv4_src",))
    assert Ether(out)[ICMP].chksum == pkt[ICMP].chksum


# -- frames the rewrites leave alone --------------------------------------------------------------------------------

ALL_NAT = [A.set_ipv4_src(OTHER), A.set_ipv4_dst(BACKEND), A.set_tp_src(1), A.set_tp_dst(2)]


@pytest.mark.parametrize("frame", [
    bytes(Ether() / ARP(psrc=CLIENT, pdst=VIP)),
    bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=2)),
    bytes(Ether() / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(src=CLIENT, dst=VIP) / TCP()),
    bytes(Ether() / IP(src=CLIENT, dst=VIP) / TCP())[:14 + 19],              # IPv4 header cut short
    bytes(Ether() / IP(src=CLIENT, dst=VIP, ihl=6) / TCP())[:14 + 22],        # IHL beyond the frame
    bytes(Ether(type=0x0800) / (b"\x65" + bytes(40))),                       # version 6 in an IPv4 frame
    bytes(12),
], ids=["arp", "ipv6", "three-tags", "short-ip", "ihl", "version", "runt"])
def test_not_ipv4_is_untouched(runner, frame):
    assert rewrite(runner, frame, ALL_NAT)[0] == frame


@pytest.mark.parametrize("l4, keep", [("tcp", 19), ("udp", 7)])
def test_truncated_l4_changes_only_the_ip_header(runner, l4, keep):
    pkt = packet(l4)
    frame = bytes(pkt)
    frame = frame[:l4_offset(frame) + keep]
    out, _ = rewrite(runner, frame, ALL_NAT)
    ip = Ether(bytes(pkt))[IP]
    ip.src, ip.dst = OTHER, BACKEND
    del ip.chksum
    new_ip = bytes(IP(bytes(ip)))[:20]
    assert out[:14] == frame[:14] and out[14:34] == new_ip and out[34:] == frame[34:]


# -- the list around the rewrites -----------------------------------------------------------------------------------

def test_an_earlier_output_gets_the_unmodified_frame(runner):
    pkt = packet("tcp")
    out = runner.run(bytes(pkt), VNET_NONE,
                     [A.output(2), A.set_ipv4_dst(BACKEND), A.set_tp_dst(8080), A.output(3), A.set_tp_src(9),
                      A.output(0)])
    assert out[2] == [(bytes(pkt), VNET_NONE)]
    assert out[3] == [(expected(pkt, ("ipv4_dst", "tp_dst")), VNET_NONE)]
    assert out[0] == [(bytes(rewritten(pkt, dst=BACKEND, dport=8080, sport=9)), VNET_NONE)]


@pytest.mark.parametrize("l4", ["tcp", "udp"])
@pytest.mark.parametrize("partial", [False, True], ids=["full", "partial"])
def test_dnat_then_reverse_round_trips(runner, l4, partial):
    """DNAT (dst, dport) on the way in, the inverse rewrite after it: the original bytes again."""
    pkt = packet(l4, tags=(10,))
    frame, vnet = as_partial(pkt) if partial else (bytes(pkt), VNET_NONE)
    dport = l4_layer(pkt).dport
    inside, inside_vnet = rewrite(runner, frame, [A.set_ipv4_dst(BACKEND), A.set_tp_dst(8080)], vnet)
    assert (Ether(inside)[IP].dst, l4_layer(Ether(inside)).dport) == (BACKEND, 8080)
    back, back_vnet = rewrite(runner, inside, [A.set_ipv4_dst(VIP), A.set_tp_dst(dport)], inside_vnet)
    assert (back, back_vnet) == (frame, vnet)


@pytest.mark.parametrize("l4", ["tcp", "udp"])
def test_dnat_snat_pair_is_transparent(runner, l4):
    """The client talks to VIP:port; DNAT sends it to BACKEND:8080, SNAT makes the backend's reply come from
    VIP:port again: the client sees exactly the reply VIP would have sent."""
    request = packet(l4)
    vip_port = l4_layer(request).dport
    inside, _ = rewrite(runner, request, [A.set_ipv4_dst(BACKEND), A.set_tp_dst(8080)])
    assert inside == bytes(rewritten(request, dst=BACKEND, dport=8080))

    def reply(src, sport):
        layer = (TCP(sport=sport, dport=40000, seq=9, ack=13, flags="A") if l4 == "tcp"
                 else UDP(sport=sport, dport=40000))
        return Ether(bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
                           / IP(src=src, dst=CLIENT, id=77) / layer / b"answer"))

    outside, _ = rewrite(runner, reply(BACKEND, 8080), [A.set_ipv4_src(VIP), A.set_tp_src(vip_port)])
    assert outside == bytes(reply(VIP, vip_port))


# -- the action list as data ----------------------------------------------------------------------------------------

def test_helpers_and_describe():
    acts = [A.set_ipv4_src("192.0.2.1"), A.set_ipv4_dst(bytes([10, 0, 0, 7])), A.set_tp_src(80), A.set_tp_dst(8080)]
    assert [a.type for a in acts] == [9, 10, 11, 12]
    assert acts[0].data == bytes([192, 0, 2, 1]) and acts[3].arg == 8080
    assert A.describe(acts) == "set_ipv4_src:192.0.2.1,set_ipv4_dst:10.0.0.7,set_tp_src:80,set_tp_dst:8080"
    for bad in (lambda: A.set_tp_src(65536), lambda: A.set_tp_dst(-1), lambda: A.set_ipv4_src(b"\x01\x02\x03")):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("impl", [fastpath, refpath], ids=["c", "python"])
def test_flow_tables_take_and_return_the_new_actions(impl):
    ft = impl.FlowTable()
    acts = [A.set_ipv4_src(OTHER), A.set_ipv4_dst(BACKEND), A.set_tp_src(1), A.set_tp_dst(2), A.output(1)]
    assert ft.put(bytes(64), bytes(64), 0, acts, now_ms=0) == 0
    (info,) = ft.dump()
    assert list(info.actions) == acts
