"""Frame parsing: the twin of csrc/parse.c (`ps_parse`), docs/DATAPATH.md "Parsing".

The key starts all zero with in_port set and is filled in frame order. Each header is checked completely before
any of its fields is written, so on an error the key holds the fields of the headers before the bad one and zeros
after it; `l3_ofs` / `l4_ofs` are set only for headers that passed their checks.

This is the per-packet path of the Python datapath, so it reads fields with `struct.unpack_from` and indexing
instead of building header objects.
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

# Key offsets, as in struct ps_flow_key.
_K_IN_PORT = 0
_K_VLAN_TCI = 2
_K_ETH_DST = 4
_K_ETH_TYPE = 16
_K_NW_PROTO = 18
_K_NW_TOS = 19
_K_NW_TTL = 20
_K_NW_FRAG = 21
_K_NW_SRC = 24
_K_NW_DST = 40
_K_TP_SRC = 56
_K_TP_DST = 58
_K_TCP_FLAGS = 60

_be16 = struct.Struct("!H").unpack_from
_put16 = struct.Struct("!H").pack_into
_ip4 = struct.Struct("!BBHHHBB2x4s4s").unpack_from     # ver_ihl, tos, tot_len, id, frag, ttl, proto, src, dst
_arp = struct.Struct("!HHBBH6s4s6s4s").unpack_from     # htype, ptype, hlen, plen, op, sha, spa, tha, tpa
_ip6 = struct.Struct("!IHBB16s16s").unpack_from        # ver_tc_flow, plen, next, hlim, src, dst
_ports = struct.Struct("!HH").unpack_from

_PE_OK = consts.PE_OK
_PE_RUNT = consts.PE_RUNT
_PE_L4_TRUNC = consts.PE_L4_TRUNC
_VLAN_TPIDS = (consts.ETH_TYPE_VLAN, consts.ETH_TYPE_QINQ)


def parse(frame, in_port: int = 0, max_frame: int = 0, is_gso: bool = False) -> ParseResult:
    """Extract the flow key of `frame`, which arrived on `in_port`; see the module docstring."""
    size = len(frame)
    key = bytearray(consts.KEY_SIZE)
    _put16(key, _K_IN_PORT, in_port)
    # Oversize is checked before runt, as the contract orders it; a GSO super-frame may exceed max_frame.
    if max_frame > 0 and not is_gso and size > max_frame:
        return ParseResult(consts.PE_OVERSIZE, bytes(key), 0, 0)
    if size < ETH_HDR_LEN:
        return ParseResult(_PE_RUNT, bytes(key), 0, 0)
    key[_K_ETH_DST:_K_ETH_TYPE] = frame[0:12]

    ofs = 12                                            # offset of the current EtherType / TPID
    eth_type = _be16(frame, ofs)[0]
    n_tags = 0
    while eth_type in _VLAN_TPIDS:
        # The tag (4 bytes from its TPID) and the next type (2 more) must both be there. The runt check comes
        # before the tag count, in the order the contract lists them, so a cut-off third tag is a runt.
        if size < ofs + VLAN_TAG_LEN + 2:
            return ParseResult(_PE_RUNT, bytes(key), 0, 0)
        if n_tags == MAX_VLAN_TAGS:
            return ParseResult(consts.PE_VLAN, bytes(key), 0, 0)
        if n_tags == 0:
            tci = _be16(frame, ofs + 2)[0]
            # DEI is bit 12, the very bit the key uses for "tag present", so setting it drops DEI.
            _put16(key, _K_VLAN_TCI, tci | consts.VLAN_PRESENT)
        n_tags += 1
        ofs += VLAN_TAG_LEN
        eth_type = _be16(frame, ofs)[0]
    l3 = ofs + 2
    if eth_type < 0x0600:
        _put16(key, _K_ETH_TYPE, consts.ETH_TYPE_NONE)
        return ParseResult(_PE_OK, bytes(key), 0, 0)
    _put16(key, _K_ETH_TYPE, eth_type)
    avail = size - l3

    if eth_type == consts.ETH_TYPE_IPV4:
        if avail < IP4_HDR_MIN:
            return ParseResult(consts.PE_IP_TRUNC, bytes(key), 0, 0)
        ver_ihl, tos, tot_len, _ident, frag_field, ttl, proto, src, dst = _ip4(frame, l3)
        if ver_ihl >> 4 != 4:
            return ParseResult(consts.PE_IP_VERSION, bytes(key), 0, 0)
        hlen = (ver_ihl & 0x0F) * 4
        if hlen < IP4_HDR_MIN or hlen > avail:
            return ParseResult(consts.PE_IP_IHL, bytes(key), 0, 0)
        if tot_len < hlen or tot_len > avail:
            return ParseResult(consts.PE_IP_LEN, bytes(key), 0, 0)
        frag = 0
        if frag_field & IP4_OFFSET_MASK:
            frag = consts.FRAG_ANY | consts.FRAG_LATER
        elif frag_field & IP4_MF:
            frag = consts.FRAG_ANY
        key[_K_NW_PROTO] = proto
        key[_K_NW_TOS] = tos
        key[_K_NW_TTL] = ttl
        key[_K_NW_FRAG] = frag
        key[_K_NW_SRC:_K_NW_SRC + 4] = src
        key[_K_NW_DST:_K_NW_DST + 4] = dst
        l4 = l3 + hlen
        region = tot_len - hlen                         # Ethernet padding after tot_len is not L4
        is_icmp = proto == IP_PROTO_ICMP

    elif eth_type == consts.ETH_TYPE_IPV6:
        if avail < IP6_HDR_LEN:
            return ParseResult(consts.PE_IP_TRUNC, bytes(key), 0, 0)
        ver_tc_flow, plen, nxt, hlim, src, dst = _ip6(frame, l3)
        if ver_tc_flow >> 28 != 6:
            return ParseResult(consts.PE_IP_VERSION, bytes(key), 0, 0)
        if IP6_HDR_LEN + plen > avail:
            return ParseResult(consts.PE_IP_LEN, bytes(key), 0, 0)
        key[_K_NW_TOS] = ver_tc_flow >> 20 & 0xFF
        key[_K_NW_TTL] = hlim
        key[_K_NW_SRC:_K_NW_DST] = src
        key[_K_NW_DST:_K_TP_SRC] = dst
        l4 = l3 + IP6_HDR_LEN
        end = l4 + plen
        frag = 0
        n_ext = 0
        while nxt in _IP6_EXT:
            left = end - l4
            if n_ext == IP6_MAX_EXT or left < 2:
                return ParseResult(consts.PE_IP6_EXT, bytes(key), l3, 0)
            n_ext += 1
            if nxt == IP6_EXT_FRAGMENT:
                ext_len = 8
                if ext_len > left:
                    return ParseResult(consts.PE_IP6_EXT, bytes(key), l3, 0)
                offlg = _be16(frame, l4 + 2)[0]
                # Ambiguity: "sets nw_frag like IPv4" is read literally: ANY if M or offset != 0, LATER if
                # offset != 0, nothing otherwise (an atomic fragment header leaves nw_frag as it was). It is
                # written as soon as this header passed its check, so a later bad header leaves it. Walking
                # continues after a later fragment's header too: the contract names no exception.
                if offlg >> 3:
                    frag = consts.FRAG_ANY | consts.FRAG_LATER
                    key[_K_NW_FRAG] = frag
                elif offlg & 1:
                    frag = consts.FRAG_ANY
                    key[_K_NW_FRAG] = frag
            else:
                if nxt == IP6_EXT_AH:
                    ext_len = (frame[l4 + 1] + 2) * 4
                else:
                    ext_len = (frame[l4 + 1] + 1) * 8
                if ext_len > left:
                    return ParseResult(consts.PE_IP6_EXT, bytes(key), l3, 0)
            nxt = frame[l4]
            l4 += ext_len
        proto = nxt
        key[_K_NW_PROTO] = proto
        region = end - l4
        is_icmp = proto == IP_PROTO_ICMPV6

    elif eth_type == consts.ETH_TYPE_ARP:
        if avail < ARP_LEN:
            return ParseResult(consts.PE_ARP, bytes(key), 0, 0)
        htype, ptype, hln, pln, op, _sha, spa, _tha, tpa = _arp(frame, l3)
        if htype != 1 or ptype != consts.ETH_TYPE_IPV4 or hln != 6 or pln != 4:
            return ParseResult(consts.PE_ARP, bytes(key), 0, 0)
        if op < 256:
            key[_K_NW_PROTO] = op
        key[_K_NW_SRC:_K_NW_SRC + 4] = spa
        key[_K_NW_DST:_K_NW_DST + 4] = tpa
        return ParseResult(_PE_OK, bytes(key), l3, 0)

    else:
        return ParseResult(_PE_OK, bytes(key), 0, 0)

    # L4: not in a non-first fragment, where the bytes after the IP header are payload.
    if frag & consts.FRAG_LATER:
        return ParseResult(_PE_OK, bytes(key), l3, 0)
    if proto == IP_PROTO_TCP:
        if region < TCP_HDR_MIN:
            return ParseResult(_PE_L4_TRUNC, bytes(key), l3, 0)
        doff_flags = _be16(frame, l4 + 12)[0]
        doff = doff_flags >> 12
        if doff < 5 or doff * 4 > region:
            return ParseResult(_PE_L4_TRUNC, bytes(key), l3, 0)
        key[_K_TP_SRC:_K_TCP_FLAGS] = frame[l4:l4 + 4]
        _put16(key, _K_TCP_FLAGS, doff_flags & TCP_FLAGS_MASK)
    elif proto == IP_PROTO_UDP:
        if region < UDP_HDR_LEN:
            return ParseResult(_PE_L4_TRUNC, bytes(key), l3, 0)
        if not is_gso:
            # A GSO super-frame's UDP length describes one segment, not the frame, so it is not checked there.
            udp_len = _be16(frame, l4 + 4)[0]
            if udp_len < UDP_HDR_LEN or udp_len > region:
                return ParseResult(_PE_L4_TRUNC, bytes(key), l3, 0)
        key[_K_TP_SRC:_K_TCP_FLAGS] = frame[l4:l4 + 4]
    elif is_icmp:
        if region < ICMP_HDR_MIN:
            return ParseResult(_PE_L4_TRUNC, bytes(key), l3, 0)
        key[_K_TP_SRC + 1] = frame[l4]
        key[_K_TP_DST + 1] = frame[l4 + 1]
    else:
        # Ambiguity: "l4_ofs set on success" is read with the header's "offset of the TCP/UDP/ICMP header;
        # 0 if none": other protocols leave it 0.
        return ParseResult(_PE_OK, bytes(key), l3, 0)
    return ParseResult(_PE_OK, bytes(key), l3, l4)
