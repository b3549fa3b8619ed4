"""Frame parsing: the twin of csrc/parse.c (`ps_parse`), docs/DATAPATH.md "Parsing".

The key starts all zero with in_port set and is filled in frame order. Each header is checked completely before
any of its fields is written, so on an error the key holds the fields of the headers before the bad one and zeros
after it; `l3_ofs` / `l4_ofs` are set only for headers that passed their checks.

This is the per-packet path of the Python datapath, so it reads fields with `struct.unpack_from` and indexing
instead of building header objects, and packs the key with one `struct.pack`.
"""
from __future__ import annotations

import struct

from .. import consts
from ..datapath_types import ParseResult

ETH_HDR_LEN = 14            # dst, src, type
VLAN_TAG_LEN = 4            # TPID + TCI
MAX_VLAN_TAGS = 2           # a third tag is PE_VLAN
ARP_LEN = 28                # Ethernet/IPv4 ARP
IP4_HDR_MIN = 20
IP6_HDR_LEN = 40
IP6_MAX_EXT = 8             # a 9th extension header is PE_IP6_EXT
TCP_HDR_MIN = 20
UDP_HDR_LEN = 8
ICMP_HDR_MIN = 4            # type, code, checksum

IP_PROTO_ICMP = 1
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17
IP_PROTO_ICMPV6 = 58

IP6_EXT_HOPOPTS = 0         # hop-by-hop options
IP6_EXT_ROUTING = 43
IP6_EXT_FRAGMENT = 44
IP6_EXT_AH = 51             # length in 4-byte units, minus 2
IP6_EXT_DSTOPTS = 60
_IP6_EXT_8 = (IP6_EXT_HOPOPTS, IP6_EXT_ROUTING, IP6_EXT_DSTOPTS)   # length in 8-byte units, minus 1
_IP6_EXT = frozenset((IP6_EXT_HOPOPTS, IP6_EXT_ROUTING, IP6_EXT_FRAGMENT, IP6_EXT_AH, IP6_EXT_DSTOPTS))

IP4_MF = 0x2000             # more fragments
IP4_OFFSET_MASK = 0x1FFF
TCP_FLAGS_MASK = 0x0FFF

# struct ps_flow_key in one pack: in_port, vlan_tci, eth_dst+eth_src, eth_type, nw_proto, nw_tos, nw_ttl, nw_frag,
# pad0, nw_src, nw_dst (an IPv4 address is zero-padded to 16 bytes by "16s"), tp_src, tp_dst, tcp_flags, pad1.
_KEY = struct.Struct("!HH12sHBBBB2x16s16sHHH2x")
_pack_key = _KEY.pack
assert _KEY.size == consts.KEY_SIZE

_be16 = struct.Struct("!H").unpack_from
_ip4 = struct.Struct("!BBHHHBB2x4s4s").unpack_from     # ver_ihl, tos, tot_len, id, frag, ttl, proto, src, dst
_arp = struct.Struct("!HHBBH6s4s6s4s").unpack_from     # htype, ptype, hlen, plen, op, sha, spa, tha, tpa
_ip6 = struct.Struct("!IHBB16s16s").unpack_from        # ver_tc_flow, plen, next, hlim, src, dst
_tcp = struct.Struct("!HH8xH").unpack_from             # sport, dport, data offset + flags
_udp = struct.Struct("!HHH").unpack_from               # sport, dport, length

_PE_OK = consts.PE_OK
_PE_RUNT = consts.PE_RUNT
_PE_L4_TRUNC = consts.PE_L4_TRUNC
_VLAN_TPIDS = (consts.ETH_TYPE_VLAN, consts.ETH_TYPE_QINQ)
_ETH_TYPE_IPV4 = consts.ETH_TYPE_IPV4
_FRAG_LATER = consts.FRAG_LATER


def _key(in_port: int, tci: int = 0, macs: bytes = b"", eth_type: int = 0, proto: int = 0, tos: int = 0,
         ttl: int = 0, frag: int = 0, src: bytes = b"", dst: bytes = b"") -> bytes:
    """A key holding the fields of the headers parsed so far (the rest zero), for the early returns."""
    return _pack_key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst, 0, 0, 0)


def parse(frame, in_port: int = 0, max_frame: int = 0, is_gso: bool = False) -> ParseResult:
    """Extract the flow key of `frame`, which arrived on `in_port`; see the module docstring."""
    return ParseResult(*parse_frame(bytes(frame), in_port, max_frame, is_gso))


def parse_frame(frame: bytes, in_port: int, max_frame: int, is_gso) -> tuple[int, bytes, int, int]:
    """`parse` as a plain (error, key, l3_ofs, l4_ofs) tuple, for the datapath's per-packet loop.

    The fields are gathered in locals and packed into the key once, at the end or at the early return of an
    error, rather than written one by one into a bytearray: fewer operations per packet, same bytes.
    """
    size = len(frame)
    # Oversize is checked before runt, as the contract orders it; a GSO super-frame may exceed max_frame.
    if max_frame > 0 and not is_gso and size > max_frame:
        return consts.PE_OVERSIZE, _key(in_port), 0, 0
    if size < ETH_HDR_LEN:
        return _PE_RUNT, _key(in_port), 0, 0
    macs = frame[0:12]                                  # eth_dst, eth_src

    ofs = 12                                            # offset of the current EtherType / TPID
    eth_type = _be16(frame, ofs)[0]
    tci = 0
    n_tags = 0
    while eth_type in _VLAN_TPIDS:
        # The tag (4 bytes from its TPID) and the next type (2 more) must both be there. The runt check comes
        # before the tag count, in the order the contract lists them, so a cut-off third tag is a runt.
        if size < ofs + VLAN_TAG_LEN + 2:
            return _PE_RUNT, _key(in_port, tci, macs), 0, 0
        if n_tags == MAX_VLAN_TAGS:
            return consts.PE_VLAN, _key(in_port, tci, macs), 0, 0
        if n_tags == 0:
            # DEI is bit 12, the very bit the key uses for "tag present", so setting it drops DEI.
            tci = _be16(frame, ofs + 2)[0] | consts.VLAN_PRESENT
        n_tags += 1
        ofs += VLAN_TAG_LEN
        eth_type = _be16(frame, ofs)[0]
    l3 = ofs + 2
    if eth_type < 0x0600:
        return _PE_OK, _key(in_port, tci, macs, consts.ETH_TYPE_NONE), 0, 0
    avail = size - l3

    if eth_type == _ETH_TYPE_IPV4:
        if avail < IP4_HDR_MIN:
            return consts.PE_IP_TRUNC, _key(in_port, tci, macs, eth_type), 0, 0
        ver_ihl, tos, tot_len, _ident, frag_field, ttl, proto, src, dst = _ip4(frame, l3)
        if ver_ihl >> 4 != 4:
            return consts.PE_IP_VERSION, _key(in_port, tci, macs, eth_type), 0, 0
        hlen = (ver_ihl & 0x0F) * 4
        if hlen < IP4_HDR_MIN or hlen > avail:
            return consts.PE_IP_IHL, _key(in_port, tci, macs, eth_type), 0, 0
        if tot_len < hlen or tot_len > avail:
            return consts.PE_IP_LEN, _key(in_port, tci, macs, eth_type), 0, 0
        frag = 0
        if frag_field & IP4_OFFSET_MASK:
            frag = consts.FRAG_ANY | consts.FRAG_LATER
        elif frag_field & IP4_MF:
            frag = consts.FRAG_ANY
        l4 = l3 + hlen
        region = tot_len - hlen                         # Ethernet padding after tot_len is not L4
        is_icmp = proto == IP_PROTO_ICMP

    elif eth_type == consts.ETH_TYPE_IPV6:
        if avail < IP6_HDR_LEN:
            return consts.PE_IP_TRUNC, _key(in_port, tci, macs, eth_type), 0, 0
        ver_tc_flow, plen, nxt, ttl, src, dst = _ip6(frame, l3)
        if ver_tc_flow >> 28 != 6:
            return consts.PE_IP_VERSION, _key(in_port, tci, macs, eth_type), 0, 0
        if IP6_HDR_LEN + plen > avail:
            return consts.PE_IP_LEN, _key(in_port, tci, macs, eth_type), 0, 0
        tos = ver_tc_flow >> 20 & 0xFF                  # traffic class; ttl is the hop limit
        l4 = l3 + IP6_HDR_LEN
        end = l4 + plen
        frag = 0
        n_ext = 0
        while nxt in _IP6_EXT:
            left = end - l4
            # A bad extension header leaves nw_proto 0 and the fields written before it.
            if n_ext == IP6_MAX_EXT or left < 2:
                return consts.PE_IP6_EXT, _key(in_port, tci, macs, eth_type, 0, tos, ttl, frag, src, dst), l3, 0
            n_ext += 1
            if nxt == IP6_EXT_FRAGMENT:
                ext_len = 8
                if ext_len > left:
                    return consts.PE_IP6_EXT, _key(in_port, tci, macs, eth_type, 0, tos, ttl, frag, src, dst), l3, 0
                offlg = _be16(frame, l4 + 2)[0]
                # Ambiguity: "sets nw_frag like IPv4" is read literally: ANY if M or offset != 0, LATER if
                # offset != 0, nothing otherwise (an atomic fragment header leaves nw_frag as it was). It is
                # written as soon as this header passed its check, so a later bad header leaves it. Walking
                # continues after a later fragment's header too: the contract names no exception.
                if offlg >> 3:
                    frag = consts.FRAG_ANY | consts.FRAG_LATER
                elif offlg & 1:
                    frag = consts.FRAG_ANY
            else:
                if nxt == IP6_EXT_AH:
                    ext_len = (frame[l4 + 1] + 2) * 4
                else:
                    ext_len = (frame[l4 + 1] + 1) * 8
                if ext_len > left:
                    return consts.PE_IP6_EXT, _key(in_port, tci, macs, eth_type, 0, tos, ttl, frag, src, dst), l3, 0
            nxt = frame[l4]
            l4 += ext_len
        proto = nxt
        region = end - l4
        is_icmp = proto == IP_PROTO_ICMPV6

    elif eth_type == consts.ETH_TYPE_ARP:
        if avail < ARP_LEN:
            return consts.PE_ARP, _key(in_port, tci, macs, eth_type), 0, 0
        htype, ptype, hln, pln, op, _sha, spa, _tha, tpa = _arp(frame, l3)
        if htype != 1 or ptype != consts.ETH_TYPE_IPV4 or hln != 6 or pln != 4:
            return consts.PE_ARP, _key(in_port, tci, macs, eth_type), 0, 0
        return _PE_OK, _key(in_port, tci, macs, eth_type, op if op < 256 else 0, src=spa, dst=tpa), l3, 0

    else:
        return _PE_OK, _key(in_port, tci, macs, eth_type), 0, 0

    # L4: not in a non-first fragment, where the bytes after the IP header are payload.
    if frag & _FRAG_LATER:
        return _PE_OK, _key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst), l3, 0
    if proto == IP_PROTO_TCP:
        if region < TCP_HDR_MIN:
            return _PE_L4_TRUNC, _key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst), l3, 0
        tp_src, tp_dst, doff_flags = _tcp(frame, l4)
        doff = doff_flags >> 12
        if doff < 5 or doff * 4 > region:
            return _PE_L4_TRUNC, _key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst), l3, 0
        return (_PE_OK, _pack_key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst, tp_src, tp_dst,
                                  doff_flags & TCP_FLAGS_MASK), l3, l4)
    if proto == IP_PROTO_UDP:
        if region < UDP_HDR_LEN:
            return _PE_L4_TRUNC, _key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst), l3, 0
        tp_src, tp_dst, udp_len = _udp(frame, l4)
        # A GSO super-frame's UDP length describes one segment, not the frame, so it is not checked there.
        if not is_gso and (udp_len < UDP_HDR_LEN or udp_len > region):
            return _PE_L4_TRUNC, _key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst), l3, 0
        return (_PE_OK, _pack_key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst, tp_src, tp_dst, 0),
                l3, l4)
    if is_icmp:
        if region < ICMP_HDR_MIN:
            return _PE_L4_TRUNC, _key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst), l3, 0
        return (_PE_OK, _pack_key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst, frame[l4],
                                  frame[l4 + 1], 0), l3, l4)
    # Ambiguity: "l4_ofs set on success" is read with the header's "offset of the TCP/UDP/ICMP header; 0 if
    # none": other protocols leave it 0.
    return _PE_OK, _key(in_port, tci, macs, eth_type, proto, tos, ttl, frag, src, dst), l3, 0
