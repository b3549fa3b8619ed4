"""IPIP and GRE encapsulation and decapsulation: the twin of csrc/tunnel.c (docs/DATAPATH.md "Tunnels").

A tunnel header goes between the Ethernet header (with its VLAN tags) and the IP packet. LB's ipip and gre modes
encapsulate; the DECAP action strips. Both keep the vnet header's offsets pointing at the same bytes.
"""
from __future__ import annotations

from .. import consts
from .csum import csum
from .nat import IP_FRAG_OFF_MASK, IP_FRAG_OFS, IP_PROTO_OFS, ipv4_offset

IPPROTO_IPIP = 4            # IPv4 in IPv4 (RFC 2003)
IPPROTO_GRE = 47            # Generic Routing Encapsulation (RFC 2784, RFC 2890)
TUNNEL_TTL = 64             # TTL of an outer header
IP_HDR_LEN = 20             # the outer header has no options
GRE_HDR_LEN = 4             # flags and version, protocol; optional words follow
IP_DF = 0x4000              # ip_frag_off: don't fragment
IP_MF = 0x2000              # ip_frag_off: more fragments
GRE_F_CSUM = 0x8000         # a checksum word follows
GRE_F_ROUTING = 0x4000      # RFC 1701 source routing: refused
GRE_F_KEY = 0x2000          # a key word follows
GRE_F_SEQ = 0x1000          # a sequence number word follows
GRE_VERSION_MASK = 0x0007


def _load16(frame, at: int) -> int:
    return frame[at] << 8 | frame[at + 1]


def _outer_ip(inner, payload_size: int, proto: int, src: bytes, dst: bytes) -> bytes:
    """The outer IPv4 header for the IPv4 packet `inner` behind `payload_size` more bytes: TOS and DF from the inner
    header, id 0, TTL 64, the checksum computed. The total length is the inner one's (Ethernet padding after the
    inner packet stays padding), plus what encap adds, within 16 bits."""
    total = (_load16(inner, 2) + payload_size) & 0xFFFF
    header = bytearray(IP_HDR_LEN)
    header[0] = 0x45
    header[1] = inner[1]
    header[2:4] = total.to_bytes(2, "big")
    header[6:8] = (_load16(inner, IP_FRAG_OFS) & IP_DF).to_bytes(2, "big")
    header[8] = TUNNEL_TTL
    header[9] = proto
    header[12:16] = src
    header[16:20] = dst
    header[10:12] = csum(bytes(header)).to_bytes(2, "big")
    return bytes(header)


def encap(frame: bytearray, vnet, proto: int, src: bytes, dst: bytes) -> bool:
    """`ps_tunnel_encap`: insert an outer IPv4 header from `src` to `dst` (and for GRE a 4-byte GRE header: no
    flags, protocol 0x0800) in front of the IPv4 packet of `frame`; False, changing nothing, if the frame is not
    IPv4 or `proto` is neither 4 nor 47."""
    l3 = ipv4_offset(frame)
    if not l3 or proto not in (IPPROTO_IPIP, IPPROTO_GRE):
        return False
    added = IP_HDR_LEN + (GRE_HDR_LEN if proto == IPPROTO_GRE else 0)
    header = _outer_ip(frame[l3:l3 + IP_HDR_LEN], added, proto, src, dst)
    if proto == IPPROTO_GRE:
        header += consts.ETH_TYPE_IPV4.to_bytes(4, "big")
    frame[l3:l3] = header
    vnet.grow(added)
    return True


def _gre_hdr_size(frame, at: int) -> int:
    """Bytes of the GRE header at `at`, or 0 if DECAP refuses it: routing present, version not 0, a payload other
    than IPv4, or cut short with its optional words."""
    avail = len(frame) - at
    if avail < GRE_HDR_LEN:
        return 0
    flags = _load16(frame, at)
    if flags & GRE_F_ROUTING or flags & GRE_VERSION_MASK or _load16(frame, at + 2) != consts.ETH_TYPE_IPV4:
        return 0
    size = GRE_HDR_LEN + sum(4 for bit in (GRE_F_CSUM, GRE_F_KEY, GRE_F_SEQ) if flags & bit)
    return size if size <= avail else 0


def _is_whole_ipv4(frame, at: int) -> bool:
    avail = len(frame) - at
    return avail >= IP_HDR_LEN and frame[at] >> 4 == 4 and frame[at] & 0xF >= 5 and (frame[at] & 0xF) * 4 <= avail


def decap(frame: bytearray, vnet) -> bool:
    """`ps_tunnel_decap`: remove the outer IPv4 header (and GRE header) of an IPIP or GRE-carrying-IPv4 packet;
    False, changing nothing, for anything else (not IPv4, an outer fragment, another protocol, GRE routing or a
    version other than 0, a payload other than a whole IPv4 header, truncation)."""
    l3 = ipv4_offset(frame)
    if not l3 or _load16(frame, l3 + IP_FRAG_OFS) & (IP_MF | IP_FRAG_OFF_MASK):
        return False
    removed = (frame[l3] & 0xF) * 4
    proto = frame[l3 + IP_PROTO_OFS]
    if proto == IPPROTO_GRE:
        gre_size = _gre_hdr_size(frame, l3 + removed)
        if not gre_size:
            return False
        removed += gre_size
    elif proto != IPPROTO_IPIP:
        return False
    if not _is_whole_ipv4(frame, l3 + removed):
        return False
    del frame[l3:l3 + removed]
    vnet.grow(-removed)
    return True


def outer_destination(frame) -> bytes | None:
    """The outer IPv4 destination of a tunnel packet, before `decap` strips it (DECAP_DELIVER)."""
    l3 = ipv4_offset(frame)
    if not l3 or len(frame) < l3 + 20:
        return None
    return bytes(frame[l3 + 16:l3 + 20])
