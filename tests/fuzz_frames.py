"""Frames built header by header, for the differential fuzz tests (tests/test_differential_fuzz.py).

Every header is packed here with `struct`, not scapy: the fuzz tests need thousands of frames a second, and control
of every field a parser looks at (IHL, lengths, options, extension header lengths, data offsets, checksums). A
strategy returns a `Built`: the bytes, where its headers lie, and, when nothing in it lies, the parse result
docs/DATAPATH.md "Parsing" says it must have, worked out from what was built rather than by parsing it.
`mutated()` then damages frames as a wire or an attacker would: bit flips, truncation, extension, overwritten
fields, bytes cut out or put in.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from hypothesis import strategies as st

from pyswitch import consts
from pyswitch.datapath_types import ParseResult
from pyswitch.flowkey import FlowKey

ETH_VLAN, ETH_QINQ, ETH_IP4, ETH_IP6, ETH_ARP = 0x8100, 0x88A8, 0x0800, 0x86DD, 0x0806
TCP, UDP, ICMP, ICMP6, IPIP, GRE = 6, 17, 1, 58, 4, 47
HOPOPTS, ROUTING, FRAGMENT, AH, DSTOPTS, NO_NEXT = 0, 43, 44, 51, 60, 59


class Built(NamedTuple):
    data: bytes
    expect: ParseResult | None   # what ps_parse(data, in_port=0) must answer; None when a field lies
    l3: int                      # where the IP/ARP header starts (0: none)
    l4: int                      # where the TCP/UDP/ICMP header starts (0: none)
    ip_version: int              # 4, 6, or 0
    proto: int                   # the L4 protocol built (0: none)


class Pools(NamedTuple):
    """The addresses and ports frames are drawn from: a datapath test passes the ones its tables know."""
    macs: tuple
    ip4s: tuple
    ip6s: tuple
    ports: tuple


DEFAULT_POOLS = Pools(
    macs=(b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02", b"\xff" * 6, b"\x33\x33\x00\x00\x00\x01"),
    ip4s=tuple(bytes(a) for a in ([192, 0, 2, 1], [192, 0, 2, 2], [198, 51, 100, 7], [203, 0, 113, 200],
                                  [224, 0, 0, 5], [0, 0, 0, 0])),
    ip6s=(bytes.fromhex("20010db8000000000000000000000001"), bytes.fromhex("20010db8000000000000000000000002"),
          bytes.fromhex("20010db8000100000000000000000ff0")),
    ports=(0, 53, 80, 443, 8080, 40000, 65535),
)


# -- checksums, independent of both datapaths -----------------------------------------------------------------------

def ones_sum(data: bytes, initial: int = 0) -> int:
    """The one's complement sum of `data` as big-endian 16-bit words, folded to 16 bits (not complemented)."""
    if len(data) % 2:
        data += b"\0"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes, initial: int = 0) -> int:
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_sum(src: bytes, dst: bytes, proto: int, size: int) -> int:
    """RFC 9293 3.1 / RFC 8200 8.1: the pseudo-header's folded sum (4- or 16-byte addresses)."""
    if len(src) == 4:
        return ones_sum(src + dst + struct.pack("!xBH", proto, size))
    return ones_sum(src + dst + struct.pack("!IxxxB", size, proto))


# -- L4 --------------------------------------------------------------------------------------------------------------

CSUM_MODES = ("good", "good", "good", "partial", "zero", "bad")

TCP_OPTIONS = [b"\x02\x04\x05\xb4", b"\x01", b"\x00", b"\x03\x03\x07", b"\x04\x02",
               b"\x08\x0a" + bytes(range(8)), b"\x05\x0a" + bytes(8), b"\x1e\x04\x00\x00", b"\xfe\x02"]


@st.composite
def tcp_options(draw) -> bytes:
    opts = b"".join(draw(st.lists(st.sampled_from(TCP_OPTIONS) | st.binary(min_size=1, max_size=6), max_size=6)))
    opts = opts[:40]
    return opts + bytes(-len(opts) % 4)


def l4_checksum_value(mode: str, pseudo: int, segment: bytes, draw) -> int:
    if mode == "good":
        return checksum(segment, pseudo)
    if mode == "partial":
        return pseudo                       # what a stack with checksum offload leaves in the field
    if mode == "zero":
        return 0
    return draw(st.integers(0, 0xFFFF))


@st.composite
def l4_segments(draw, proto: int, src: bytes, dst: bytes, pools: Pools = DEFAULT_POOLS, fix=None):
    """(bytes, expected (tp_src, tp_dst, tcp_flags) or None if a field lies, TCP data offset) of one
    TCP/UDP/ICMP/ICMPv6 segment. `fix` may hold sport, dport and flags (TCP) to use instead of drawn ones."""
    fix = fix or {}
    payload = draw(st.binary(max_size=48) | st.sampled_from([b"", bytes(200)]))
    honest = fix.get("honest", False)
    mode = "partial" if fix.get("partial") else "good" if honest else draw(st.sampled_from(CSUM_MODES))
    lie = not honest and draw(st.integers(0, 11)) == 0
    if proto == TCP:
        sport, dport = fix.get("sport", draw(st.sampled_from(pools.ports))), \
            fix.get("dport", draw(st.sampled_from(pools.ports)))
        flags = fix.get("flags", draw(st.sampled_from([0x002, 0x012, 0x010, 0x018, 0x011, 0x004, 0x014, 0x003, 0])
                                      | st.integers(0, 0xFFF)))
        opts = draw(tcp_options()) if draw(st.booleans()) else b""
        doff = 5 + len(opts) // 4
        real_doff = doff
        if lie:
            doff = draw(st.sampled_from([0, 4, doff + 1, 15]))
        hdr = struct.pack("!HHIIHHH", sport, dport, draw(st.integers(0, 2**32 - 1)),
                          draw(st.integers(0, 2**32 - 1)), doff << 12 | flags, draw(st.integers(0, 0xFFFF)), 0) \
            + b"\0\0" + opts
        seg = hdr + payload
        value = l4_checksum_value(mode, pseudo_sum(src, dst, TCP, len(seg)), seg, draw)
        seg = seg[:16] + struct.pack("!H", value) + seg[18:]
        honest = not lie or 5 <= doff and doff * 4 <= len(seg)
        return seg, (sport, dport, flags) if honest else None, real_doff
    if proto == UDP:
        sport, dport = fix.get("sport", draw(st.sampled_from(pools.ports))), \
            fix.get("dport", draw(st.sampled_from(pools.ports)))
        length = 8 + len(payload)
        if lie:
            length = draw(st.sampled_from([0, 7, length + 1, 0xFFFF]) | st.integers(0, 0xFFFF))
        seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
        value = l4_checksum_value(mode, pseudo_sum(src, dst, UDP, len(seg)), seg, draw)
        seg = seg[:6] + struct.pack("!H", value) + seg[8:]
        honest = 8 <= length <= len(seg)
        return seg, (sport, dport, 0) if honest else None, 0
    if proto in (ICMP, ICMP6):
        kind, code = draw(st.sampled_from([0, 3, 8, 11, 128, 129, 135, 136]) | st.integers(0, 255)), \
            draw(st.sampled_from([0, 0, 4]) | st.integers(0, 255))
        seg = struct.pack("!BBHI", kind, code, 0, draw(st.integers(0, 2**32 - 1))) + payload
        initial = pseudo_sum(src, dst, ICMP6, len(seg)) if proto == ICMP6 else 0
        value = l4_checksum_value(mode if mode != "partial" else "good", initial, seg, draw)
        seg = seg[:2] + struct.pack("!H", value) + seg[4:]
        return seg, (kind, code, 0), 0
    return payload, None, 0


# -- IPv4 ------------------------------------------------------------------------------------------------------------

IP4_OPTIONS = [b"\x01", b"\x94\x04\x00\x00", b"\x07\x07\x04" + bytes(4), b"\x83\x07\x04\xc0\x00\x02\x09",
               b"\x89\x0b\x04" + bytes([198, 51, 100, 9, 203, 0, 113, 1]), b"\x44\x0c\x05\x00" + bytes(8),
               b"\x82\x0b" + bytes(9), b"\x00"]


@st.composite
def ip4_options(draw) -> bytes:
    opts = b"".join(draw(st.lists(st.sampled_from(IP4_OPTIONS) | st.binary(min_size=1, max_size=5), max_size=4)))
    opts = opts[:40]
    return opts + bytes(-len(opts) % 4)


def ip4_header(tos, ident, flags_frag, ttl, proto, src, dst, options, total, ihl=None, csum_mode="good", bad=0):
    ihl = (20 + len(options)) // 4 if ihl is None else ihl
    hdr = struct.pack("!BBHHHBBH4s4s", 4 << 4 | ihl, tos, total, ident, flags_frag, ttl, proto, 0, src, dst) \
        + options
    value = checksum(hdr) if csum_mode == "good" else bad
    return hdr[:10] + struct.pack("!H", value) + hdr[12:]


@st.composite
def ip4_packets(draw, pools: Pools = DEFAULT_POOLS, depth: int = 0, fix=None):
    """(packet bytes, expected key fields or None, l4 offset in the packet, proto). `fix` may hold src, dst and
    proto, and what l4_segments takes; an IPIP or GRE packet carries one of these inside."""
    fix = fix or {}
    src, dst = fix.get("src", draw(st.sampled_from(pools.ip4s))), fix.get("dst", draw(st.sampled_from(pools.ip4s)))
    # "honest": every length and checksum right (the checksum oracle's input); "partial": the same, but the
    # TCP/UDP checksum holds the pseudo-header sum for a NEEDS_CSUM vnet header (and no Ethernet padding).
    kinds = [TCP, TCP, UDP, UDP, ICMP, 0x84, ICMP6, 0]
    if depth == 0:
        kinds += [IPIP, GRE]
    proto = fix.get("proto", draw(st.sampled_from(kinds)))
    options = draw(ip4_options()) if draw(st.integers(0, 3)) == 0 else b""
    frag_kind = draw(st.sampled_from(["none"] * 6 + ["df", "first", "later", "last"]))
    flags_frag = {"none": 0, "df": 0x4000, "first": 0x2000, "later": 0x2000 | draw(st.integers(1, 0x1FFF)),
                  "last": draw(st.integers(1, 0x1FFF))}[frag_kind]
    tos, ttl = draw(st.sampled_from([0, 0xB8]) | st.integers(0, 255)), draw(st.sampled_from([64, 64, 64, 1, 0, 2, 255]))
    inner_fix = {"honest": True} if fix.get("honest") else None
    if proto == IPIP:
        inner, _f, _l4, _p = draw(ip4_packets(pools, depth + 1, inner_fix))
        body, l4_fields = inner, None
    elif proto == GRE:
        inner, _f, _l4, _p = draw(ip4_packets(pools, depth + 1, inner_fix))
        gre_flags = draw(st.sampled_from([0, 0, 0x2000, 0x8000, 0x1000, 0xB000, 0x4000, 0x0001]))
        extra = bytes(4 * bin(gre_flags & 0xB000).count("1"))
        body = struct.pack("!HH", gre_flags, draw(st.sampled_from([0x0800, 0x0800, 0x86DD, 0x6558]))) + extra + inner
        l4_fields = None
    else:
        body, l4_fields, _doff = draw(l4_segments(proto, src, dst, pools, fix))
    total = 20 + len(options) + len(body)
    honest = fix.get("honest", False)
    lie = not honest and draw(st.integers(0, 9)) == 0
    ihl = None
    csum_mode = "good" if honest else draw(st.sampled_from(["good"] * 5 + ["bad"]))
    if lie:
        what = draw(st.sampled_from(["ihl", "total", "total_short"]))
        if what == "ihl":
            ihl = draw(st.sampled_from([0, 4, 15]) | st.integers(0, 15))
        elif what == "total":
            total = draw(st.sampled_from([0, 19, total + 1, 0xFFFF]) | st.integers(0, 0xFFFF))
        else:
            total = max(20 + len(options), total - draw(st.integers(1, 8)))
    hdr = ip4_header(tos, draw(st.integers(0, 0xFFFF)), flags_frag, ttl, proto, src, dst, options, min(total, 0xFFFF),
                     ihl, csum_mode, draw(st.integers(0, 0xFFFF)))
    packet = hdr + body
    frag = 0
    if flags_frag & 0x1FFF:
        frag = consts.FRAG_ANY | consts.FRAG_LATER
    elif flags_frag & 0x2000:
        frag = consts.FRAG_ANY
    fields = None
    if not lie:
        fields = dict(nw_proto=proto, nw_tos=tos, nw_ttl=ttl, nw_frag=frag, nw_src=src.ljust(16, b"\0"),
                      nw_dst=dst.ljust(16, b"\0"))
        has_l4 = not frag & consts.FRAG_LATER and proto in (TCP, UDP, ICMP)
        if has_l4 and l4_fields is None:
            fields = None                                    # the L4 header lies
        elif has_l4:
            fields.update(tp_src=l4_fields[0], tp_dst=l4_fields[1], tcp_flags=l4_fields[2], l4=True)
    return packet, fields, len(hdr), proto


# -- IPv6 ------------------------------------------------------------------------------------------------------------

@st.composite
def ip6_extension(draw, kind: int, nxt: int, pools: Pools):
    """One extension header whose next header is `nxt`."""
    if kind == FRAGMENT:
        offset, more = draw(st.sampled_from([0, 0, 0, 1, 185]) | st.integers(0, 0x1FFF)), draw(st.integers(0, 1))
        return struct.pack("!BBHI", nxt, 0, offset << 3 | more, draw(st.integers(0, 2**32 - 1)))
    if kind == AH:
        n = draw(st.sampled_from([1, 4, 6]))           # ICV of (n + 2) * 4 - 12 bytes
        return struct.pack("!BBHII", nxt, n, 0, draw(st.integers(1, 99)), 7) + bytes((n + 2) * 4 - 12)
    if kind == ROUTING:
        n_addrs = draw(st.integers(0, 2))
        left = draw(st.sampled_from([0, 0, n_addrs]))
        body = struct.pack("!BBBB", nxt, 2 * n_addrs, draw(st.sampled_from([0, 2, 4])), left) + bytes(4) \
            + b"".join(draw(st.sampled_from(pools.ip6s)) for _ in range(n_addrs))
        return body
    # Hop-by-hop or destination options: PadN filling (n + 1) * 8 bytes, sometimes a router alert first.
    n = draw(st.sampled_from([0, 0, 1, 3]))
    opts = b"\x05\x02\x00\x00" if draw(st.booleans()) else b""
    pad = (n + 1) * 8 - 2 - len(opts)
    opts += (b"\x01" + bytes([pad - 2]) + bytes(pad - 2)) if pad >= 2 else bytes(pad)
    return bytes([nxt, n]) + opts


IP6_MAX_EXT = 8              # a 9th extension header is PE_IP6_EXT


def ip6_frag(exts: bytes, kinds) -> int:
    """nw_frag after walking the extension headers `kinds` at the start of `exts`: each fragment header that is
    not atomic sets it (offset != 0: LATER too), in frame order."""
    frag = ofs = 0
    for kind in kinds:
        if kind == FRAGMENT:
            offlg = struct.unpack_from("!H", exts, ofs + 2)[0]
            if offlg >> 3:
                frag = consts.FRAG_ANY | consts.FRAG_LATER
            elif offlg & 1:
                frag = consts.FRAG_ANY
            ofs += 8
        elif kind == AH:
            ofs += (exts[ofs + 1] + 2) * 4
        else:
            ofs += (exts[ofs + 1] + 1) * 8
    return frag


@st.composite
def ip6_packets(draw, pools: Pools = DEFAULT_POOLS):
    src, dst = draw(st.sampled_from(pools.ip6s)), draw(st.sampled_from(pools.ip6s))
    proto = draw(st.sampled_from([TCP, TCP, UDP, ICMP6, ICMP6, ICMP, NO_NEXT, 0x84]))
    if draw(st.integers(0, 15)):
        kinds = draw(st.lists(st.sampled_from([HOPOPTS, DSTOPTS, ROUTING, FRAGMENT, AH]), max_size=3))
    else:
        # Long chains: 8 headers are taken, a 9th is refused.
        kinds = draw(st.lists(st.sampled_from([DSTOPTS, FRAGMENT]), min_size=8, max_size=10))
    body, l4_fields, _doff = draw(l4_segments(proto, src, dst, pools))
    exts = b""
    nxt = proto
    # Built from the inside out: each header names the one after it.
    for kind in reversed(kinds):
        exts = draw(ip6_extension(kind, nxt, pools)) + exts
        nxt = kind
    plen = len(exts) + len(body)
    lie = draw(st.integers(0, 9)) == 0
    if lie:
        plen = draw(st.sampled_from([0, 1, plen + 1, 0xFFFF, max(plen - 4, 0)]) | st.integers(0, 0xFFFF))
    tc, hlim = draw(st.sampled_from([0, 0xB8]) | st.integers(0, 255)), draw(st.sampled_from([64, 64, 64, 1, 0, 255]))
    flow = draw(st.sampled_from([0, 0x12345]))
    hdr = struct.pack("!IHBB16s16s", 6 << 28 | tc << 20 | flow, plen, nxt, hlim, src, dst)
    packet = hdr + exts + body
    fields = None
    if not lie:
        if len(kinds) > IP6_MAX_EXT:
            # The 9th extension header is refused: nw_proto stays 0, nw_frag holds what the first 8 set.
            fields = dict(nw_proto=0, nw_tos=tc, nw_ttl=hlim, nw_frag=ip6_frag(exts, kinds[:8]), nw_src=src,
                          nw_dst=dst, error=consts.PE_IP6_EXT)
        else:
            frag = ip6_frag(exts, kinds)
            fields = dict(nw_proto=proto, nw_tos=tc, nw_ttl=hlim, nw_frag=frag, nw_src=src, nw_dst=dst)
            has_l4 = not frag & consts.FRAG_LATER and proto in (TCP, UDP, ICMP6)
            if has_l4 and l4_fields is None:
                fields = None
            elif has_l4:
                fields.update(tp_src=l4_fields[0], tp_dst=l4_fields[1], tcp_flags=l4_fields[2], l4=True)
    return packet, fields, 40 + len(exts), proto


# -- ARP and Ethernet ------------------------------------------------------------------------------------------------

@st.composite
def arp_packets(draw, pools: Pools = DEFAULT_POOLS):
    op = draw(st.sampled_from([1, 2, 1, 0x0101, 0]))
    spa, tpa = draw(st.sampled_from(pools.ip4s)), draw(st.sampled_from(pools.ip4s))
    lie = draw(st.integers(0, 7)) == 0
    htype, ptype, hln, pln = (1, ETH_IP4, 6, 4)
    if lie:
        htype, ptype, hln, pln = draw(st.sampled_from([(6, ETH_IP4, 6, 4), (1, ETH_IP6, 6, 4), (1, ETH_IP4, 8, 4),
                                                       (1, ETH_IP4, 6, 16)]))
    packet = struct.pack("!HHBBH6s4s6s4s", htype, ptype, hln, pln, op, draw(st.sampled_from(pools.macs)), spa,
                         bytes(6), tpa)
    fields = None if lie else dict(nw_proto=op if op < 256 else 0, nw_src=spa.ljust(16, b"\0"),
                                   nw_dst=tpa.ljust(16, b"\0"))
    return packet, fields, 0, 0


@st.composite
def built_frames(draw, pools: Pools = DEFAULT_POOLS, l3_kinds=("ip4", "ip4", "ip6", "ip6", "arp", "other", "llc"),
                 fix=None):
    """Whole frames: Ethernet, 0-2 tags (sometimes 3), then IPv4/IPv6/ARP/another type/an 802.3 length. `fix` may
    hold eth_dst, eth_src, and what ip4_packets takes."""
    fix = fix or {}
    dst, src = fix.get("eth_dst", draw(st.sampled_from(pools.macs))), \
        fix.get("eth_src", draw(st.sampled_from(pools.macs)))
    n_tags = draw(st.sampled_from([0] * 6 + [1] * 3 + [2] * 2 + [3]))
    tags = [(draw(st.sampled_from([ETH_VLAN, ETH_VLAN, ETH_QINQ])),
             draw(st.sampled_from([10, 20, 30, 0, 4095]) | st.integers(0, 0xFFFF))) for _ in range(n_tags)]
    kind = draw(st.sampled_from(l3_kinds))
    l4_at = 0
    version = 0
    proto = 0
    if kind == "ip4":
        body, fields, l4_rel, proto = draw(ip4_packets(pools, fix=fix))
        eth_type, version = ETH_IP4, 4
    elif kind == "ip6":
        body, fields, l4_rel, proto = draw(ip6_packets(pools))
        eth_type, version = ETH_IP6, 6
    elif kind == "arp":
        body, fields, l4_rel, _p = draw(arp_packets(pools))
        eth_type = ETH_ARP
    elif kind == "llc":
        body = b"\xaa\xaa\x03" + draw(st.binary(max_size=30))
        eth_type, fields, l4_rel = len(body), {}, 0
    else:
        body = draw(st.binary(max_size=30))
        eth_type, fields, l4_rel = draw(st.sampled_from([0x88CC, 0x8847, 0x0600, 0xFFFF])), {}, 0
    header = dst + src + b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in tags) + struct.pack("!H", eth_type)
    l3 = len(header)
    data = header + body
    if not fix.get("partial") and draw(st.integers(0, 3)) == 0:
        # Ethernet padding: zeros to 60 bytes, or anything.
        data += bytes(max(0, 60 - len(data))) if draw(st.booleans()) else draw(st.binary(min_size=1, max_size=16))
    if version:
        l4_at = l3 + l4_rel
    expect = None
    if fields is not None:
        expect = expected_parse(data, tags, dst, src, eth_type, l3, l4_at, fields, kind)
    return Built(data, expect, l3 if kind in ("ip4", "ip6", "arp") else 0, l4_at if version else 0, version, proto)


def expected_parse(data, tags, dst, src, eth_type, l3, l4_at, fields, kind) -> ParseResult:
    """The contract's answer for a frame whose fields are all honest (`fields` from the builder)."""
    tci = (tags[0][1] | consts.VLAN_PRESENT) if tags else 0
    if len(tags) > 2:
        return ParseResult(consts.PE_VLAN, FlowKey(vlan_tci=tci, eth_dst=dst, eth_src=src).pack(), 0, 0)
    if eth_type < 0x0600:
        return ParseResult(consts.PE_OK, FlowKey(vlan_tci=tci, eth_dst=dst, eth_src=src,
                                                 eth_type=consts.ETH_TYPE_NONE).pack(), 0, 0)
    fields = dict(fields)
    error = fields.pop("error", consts.PE_OK)
    has_l4 = fields.pop("l4", False)
    key = FlowKey(vlan_tci=tci, eth_dst=dst, eth_src=src, eth_type=eth_type, **fields).pack()
    if kind == "other":
        return ParseResult(consts.PE_OK, key, 0, 0)
    return ParseResult(error, key, l3, l4_at if has_l4 and error == consts.PE_OK else 0)


# -- mutations -------------------------------------------------------------------------------------------------------

@st.composite
def mutate(draw, data: bytes) -> bytes:
    """1-4 damages to `data`, mostly within the first 80 bytes where the headers are."""
    frame = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "flip", "byte", "word", "truncate", "extend", "cut", "insert"]))
        size = len(frame)
        at = draw(st.integers(0, max(0, min(size, 80) - 1)) | st.integers(0, max(0, size - 1)))
        if op == "flip" and size:
            frame[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and size:
            frame[at] = draw(st.sampled_from([0, 1, 0x45, 0x46, 0x4F, 0x60, 0xFF]) | st.integers(0, 255))
        elif op == "word" and at + 2 <= size:
            value = draw(st.sampled_from([0, 1, 5, 8, 20, 40, size - 14, size, 0x8100, 0x0800, 0x86DD, 0xFFFF]))
            frame[at:at + 2] = struct.pack("!H", value & 0xFFFF)
        elif op == "truncate":
            del frame[draw(st.integers(0, size)):]
        elif op == "extend":
            frame += draw(st.binary(min_size=1, max_size=40))
        elif op == "cut" and size:
            del frame[at:at + draw(st.integers(1, 8))]
        elif op == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(frame)


def mutated(frames=None):
    """Frames of `frames` (default: built_frames()) damaged by `mutate`."""
    frames = built_frames() if frames is None else frames
    return frames.flatmap(lambda b: mutate(b.data))


def truncations(frames=None):
    frames = built_frames() if frames is None else frames
    return frames.flatmap(lambda b: st.integers(0, len(b.data)).map(lambda n: b.data[:n]))


def any_frames(pools: Pools = DEFAULT_POOLS):
    """Every kind of input at once: built, damaged, cut short, or random bytes."""
    built = built_frames(pools)
    return st.one_of(built.map(lambda b: b.data), built.map(lambda b: b.data), mutated(built), truncations(built),
                     st.binary(max_size=100))


# -- virtio_net_hdr --------------------------------------------------------------------------------------------------

def vnet(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


@st.composite
def vnets_for(draw, built: Built):
    """vnet headers a guest or the kernel could hand with this frame: none, a partial checksum at its L4 header
    (or just off it), a GSO super-frame of the right type or a wrong one, or 10 random bytes."""
    kind = draw(st.sampled_from(["zero"] * 4 + ["csum"] * 3 + ["gso"] * 2 + ["random"]))
    if kind == "zero":
        return bytes(10)
    if kind == "random":
        return draw(st.binary(min_size=10, max_size=10))
    l4 = built.l4 or draw(st.integers(0, 80))
    field = 16 if built.proto == TCP else 6
    start = draw(st.sampled_from([l4, l4, l4, l4 + 4, max(l4 - 4, 0)]))
    offset = draw(st.sampled_from([field, field, field, 0, 16 if field == 6 else 6]))
    if kind == "csum":
        return vnet(consts.VNET_F_NEEDS_CSUM, 0, 0, 0, start, offset)
    right = {(4, TCP): consts.VNET_GSO_TCPV4, (6, TCP): consts.VNET_GSO_TCPV6}.get(
        (built.ip_version, built.proto), consts.VNET_GSO_UDP_L4)
    gso_type = draw(st.sampled_from([right, right, right | consts.VNET_GSO_ECN, consts.VNET_GSO_TCPV4,
                                     consts.VNET_GSO_UDP, 0x7F]))
    payload = max(len(built.data) - l4 - 20, 1)
    gso_size = draw(st.sampled_from([1, payload // 2 + 1, payload, 536, 1448, 0]))
    hdr_len = draw(st.sampled_from([0, l4 + 20, l4 + 8, 0xFFFF]))
    return vnet(draw(st.sampled_from([1, 1, 0, 3])), gso_type, hdr_len, gso_size, start, offset)


def frames_with_vnets(frames):
    return frames.flatmap(lambda b: vnets_for(b).map(lambda v: (b, v)))


# -- a checksum oracle -----------------------------------------------------------------------------------------------

def checksum_faults(frame: bytes) -> list[str]:
    """What is wrong with the checksums of an IPv4 frame (behind 0-2 tags): its header's, and for a whole
    unfragmented TCP or UDP datagram (UDP: unless 0, "none") its L4 one; the same inside an IPIP or GRE tunnel.
    Frames that are not such packets have nothing to check."""
    ofs = 12
    while len(frame) >= ofs + 2 and struct.unpack_from("!H", frame, ofs)[0] in (ETH_VLAN, ETH_QINQ):
        ofs += 4
    if len(frame) < ofs + 2 or struct.unpack_from("!H", frame, ofs)[0] != ETH_IP4:
        return []
    return ip4_checksum_faults(frame[ofs + 2:])


def ip4_checksum_faults(packet: bytes, depth: int = 0) -> list[str]:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return []
    ihl = (packet[0] & 0xF) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if ihl < 20 or total < ihl or total > len(packet):
        return []
    faults = [] if checksum(packet[:ihl]) == 0 else [f"IPv4 header checksum (depth {depth})"]
    if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:
        return faults                                       # a fragment: its L4 checksum covers others too
    proto, body = packet[9], packet[ihl:total]
    if proto == IPIP and depth == 0:
        return faults + ip4_checksum_faults(body, 1)
    if proto == GRE and depth == 0 and len(body) >= 4 and struct.unpack_from("!H", body, 2)[0] == ETH_IP4:
        flags = struct.unpack_from("!H", body, 0)[0]
        return faults + ip4_checksum_faults(body[4 + 4 * bin(flags & 0xB000).count("1"):], 1)
    if proto == TCP and len(body) >= 20 or proto == UDP and len(body) >= 8:
        if proto == UDP and struct.unpack_from("!H", body, 6)[0] == 0:
            return faults
        if checksum(body, pseudo_sum(packet[12:16], packet[16:20], proto, len(body))) != 0:
            faults.append(f"{'TCP' if proto == TCP else 'UDP'} checksum (depth {depth})")
    return faults
