"""Checksum and segmentation offloads in software: the twin of csrc/offload.c (docs/DATAPATH.md "Offloads").

An AF_XDP port's frames carry no virtio_net_hdr, so what one would ask of the kernel is done here instead.
Receive: a local stack's partial checksum (the TCP/UDP checksum field holds only the folded sum of the
pseudo-header; the "hardware" is to finish it) reaches XDP as it was sent, and `offload_rx_csum` describes such a
frame with NEEDS_CSUM, as PACKET_VNET_HDR would have. Transmit: `offload_csum` completes a NEEDS_CSUM checksum, and
`gso_plan` / `gso_segment` cut a TCP or UDP GSO super-frame into segments with complete checksums, as the kernel's
GSO does.

Frames and vnet headers are bytes in, bytes out; what C refuses with a negative errno raises OSError(errno).
"""
from __future__ import annotations

import errno
import os
import struct

from .. import consts
from ..datapath_types import GsoPlan
from .csum import csum
from .parse import parse

VNET = struct.Struct("<BBHHHH")     # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (little-endian)

ETH_HDR_LEN = 14            # destination, source, type
VLAN_TAG_LEN = 4            # TPID + TCI
MAX_VLAN_TAGS = 2           # tags skipped to find the IP header, as the parser skips them
IP4_HDR_MIN = 20            # an IPv4 header without options
IP6_HDR_LEN = 40
IP_TOT_LEN_OFS = 2          # IPv4 total length; IPv6: the payload length is at 4
IP_ID_OFS = 4
IP_FRAG_OFS = 6             # flags and fragment offset
IP_CSUM_OFS = 10
IP_MF = 0x2000              # more fragments
IP_FRAG_OFF_MASK = 0x1FFF   # the fragment offset, in 8-byte units
IP4_ADDRS = (12, 8)         # (offset, bytes) of source and destination together, in the IPv4 header
IPOPT_END = 0               # IPv4 option: end of the list
IPOPT_NOP = 1               # IPv4 option: one byte of padding
IPOPT_SOURCE_ROUTES = (0x83, 0x89)   # IPv4 options LSRR and SSRR (RFC 791)
IP6_PLEN_OFS = 4
IP6_NEXT_OFS = 6
IP6_ADDRS = (8, 32)         # ...in the IPv6 header
IP6_EXT_AH = 51             # extension headers GSO refuses
IP6_EXT_FRAGMENT = 44
IP6_EXT_ROUTING = 43
IP6_RT_SEGLEFT = 3          # routing header: offset of "segments left"
IPPROTO_TCP = 6
IPPROTO_UDP = 17
L4_HDR_MIN = {IPPROTO_TCP: 20, IPPROTO_UDP: 8}      # protocol: bytes of its header without options
L4_CSUM_OFS = {IPPROTO_TCP: 16, IPPROTO_UDP: 6}     # protocol: where its checksum field lies
TCP_SEQ_OFS = 4
TCP_CTL_OFS = 12            # data offset (high 4 bits), reserved, the 12 flag bits
TCP_FIN = 0x001
TCP_PSH = 0x008
TCP_CWR = 0x080
UDP_LEN_OFS = 4
CSUM_MANGLED_0 = 0xFFFF     # a computed checksum of 0 is stored as this: the same in one's complement, and for
                            # UDP never "no checksum" (RFC 768)
_VLAN_TPIDS = (consts.ETH_TYPE_VLAN, consts.ETH_TYPE_QINQ)
_KEY_ETH_TYPE = 16          # flow key offsets (docs/DATAPATH.md "Flow key")
_KEY_NW_PROTO = 18
_KEY_NW_FRAG = 21
_GSO_FAMILIES = {           # GSO type: (EtherTypes it may carry, protocol)
    consts.VNET_GSO_TCPV4: ((consts.ETH_TYPE_IPV4,), IPPROTO_TCP),
    consts.VNET_GSO_TCPV6: ((consts.ETH_TYPE_IPV6,), IPPROTO_TCP),
    consts.VNET_GSO_UDP_L4: ((consts.ETH_TYPE_IPV4, consts.ETH_TYPE_IPV6), IPPROTO_UDP),
}


def _load16(data, at: int) -> int:
    return data[at] << 8 | data[at + 1]


def _store16(data: bytearray, at: int, value: int) -> None:
    data[at:at + 2] = (value & 0xFFFF).to_bytes(2, "big")


def _refuse(code: int, what: str):
    raise OSError(code, f"{what}: {os.strerror(code)}")


def _fold(total: int) -> int:
    """The 16 bits a one's complement sum folds to, not complemented (never 0 for a non-zero sum)."""
    return ~csum(b"", total) & 0xFFFF


def _pseudo_sum(data, l3: int, ipv4: bool, proto: int, l4_size: int) -> int:
    """The one's complement sum of the pseudo-header of `l4_size` TCP/UDP bytes behind the IP header at `l3`
    (RFC 9293 3.1, RFC 8200 8.1), as a partial sum for `csum`'s `initial`."""
    offset, size = IP4_ADDRS if ipv4 else IP6_ADDRS
    addrs = data[l3 + offset:l3 + offset + size]
    return sum(struct.unpack(f"!{size // 2}H", addrs)) + proto + (l4_size >> 16) + (l4_size & 0xFFFF)


def _ip_offset(frame) -> tuple[int, int]:
    """(offset, EtherType) of what follows the Ethernet header and at most two VLAN tags."""
    l3 = ETH_HDR_LEN
    eth_type = _load16(frame, l3 - 2)
    for _ in range(MAX_VLAN_TAGS):
        if eth_type not in _VLAN_TPIDS or l3 + VLAN_TAG_LEN > len(frame):
            break
        l3 += VLAN_TAG_LEN
        eth_type = _load16(frame, l3 - 2)
    return l3, eth_type


def _transport(frame):
    """(l3, ipv4, proto, l4, l4_size) of an unfragmented IPv4 or extension-free IPv6 packet that ends where the
    frame ends, or None. A light walk of its own rather than `parse`, as C's runs on every received frame."""
    size = len(frame)
    if size < ETH_HDR_LEN:
        return None
    l3, eth_type = _ip_offset(frame)
    if eth_type == consts.ETH_TYPE_IPV4 and l3 + IP4_HDR_MIN <= size:
        ihl = (frame[l3] & 0xF) * 4
        total = _load16(frame, l3 + IP_TOT_LEN_OFS)
        if (frame[l3] >> 4 != 4 or ihl < IP4_HDR_MIN or total < ihl or l3 + total != size
                or _load16(frame, l3 + IP_FRAG_OFS) & (IP_MF | IP_FRAG_OFF_MASK)):
            return None
        return l3, True, frame[l3 + 9], l3 + ihl, total - ihl
    if eth_type == consts.ETH_TYPE_IPV6 and l3 + IP6_HDR_LEN <= size:
        payload = _load16(frame, l3 + IP6_PLEN_OFS)
        if frame[l3] >> 4 != 6 or l3 + IP6_HDR_LEN + payload != size:
            return None
        return l3, False, frame[l3 + IP6_NEXT_OFS], l3 + IP6_HDR_LEN, payload
    return None


# Segments get their checksums from the IP header's addresses, but the pseudo-header's destination is a source
# route's last address (senders use the final destination: Linux, scapy), and with an IPv6 routing header that has
# segments left, the routing header's last one (RFC 8200 8.1). Such a frame cannot be cut right; neither can one
# through an IPv6 AH, whose ICV covers the whole packet, and the kernel's GSO takes neither an AH nor a fragment
# header. The parser has walked these headers before us.

def _ipv4_options_supported(frame, l3: int, l4: int) -> bool:
    """Whether the IPv4 options between `l3` + 20 and `l4` hold no source route. A malformed option ends the walk,
    as the end of the list does."""
    ofs = l3 + IP4_HDR_MIN
    while ofs < l4 and frame[ofs] != IPOPT_END:
        if frame[ofs] in IPOPT_SOURCE_ROUTES:
            return False
        if frame[ofs] == IPOPT_NOP:
            ofs += 1
        elif ofs + 1 < l4 and frame[ofs + 1] >= 2:
            ofs += frame[ofs + 1]
        else:
            break
    return True


def _ipv6_headers_supported(frame, l3: int, l4: int) -> bool:
    """Whether the IPv6 extension headers between `l3` + 40 and `l4` are only hop-by-hop, destination options and
    routing headers without segments left."""
    ofs, nxt = l3 + IP6_HDR_LEN, frame[l3 + IP6_NEXT_OFS]
    while ofs < l4:
        if nxt in (IP6_EXT_AH, IP6_EXT_FRAGMENT) or (nxt == IP6_EXT_ROUTING and frame[ofs + IP6_RT_SEGLEFT]):
            return False
        nxt, ofs = frame[ofs], ofs + (frame[ofs + 1] + 1) * 8        # what is left is measured in 8-byte units
    return True


def offload_rx_csum(frame, vnet=None) -> bytes:
    """`ps_offload_rx_csum`: `vnet` (default all zero) with NEEDS_CSUM, csum_start (the L4 offset) and csum_offset
    (16 TCP, 6 UDP) set if `frame` is IPv4 (not a fragment) or IPv6 (no extension header) carrying TCP or UDP,
    behind at most two VLAN tags, ending where the frame ends, whose checksum field equals the folded sum of its
    pseudo-header; else `vnet`.

    That is what a partial checksum holds. A complete checksum holds it by chance once in 65536 frames, and
    completing it then rewrites the same value, so marking it is harmless; not so with bytes after the packet
    (Ethernet padding), which completion would sum too. A stack's partial checksum is never padded.
    """
    vnet = bytes(VNET.size) if vnet is None else bytes(vnet)
    found = _transport(frame)
    if found is None:
        return vnet
    l3, ipv4, proto, l4, l4_size = found
    if proto not in L4_HDR_MIN or l4_size < L4_HDR_MIN[proto]:
        return vnet
    if _load16(frame, l4 + L4_CSUM_OFS[proto]) != _fold(_pseudo_sum(frame, l3, ipv4, proto, l4_size)):
        return vnet
    flags, gso_type, hdr_len, gso_size, _start, _offset = VNET.unpack(vnet)
    return VNET.pack(flags | consts.VNET_F_NEEDS_CSUM, gso_type, hdr_len, gso_size, l4, L4_CSUM_OFS[proto])


def offload_csum(frame, vnet) -> bytes:
    """`ps_offload_csum`: `frame` with the partial checksum `vnet` describes completed: the one's complement sum
    from csum_start to the end of the frame (whose field, at csum_start + csum_offset, holds the pseudo-header's
    sum) goes into the field, 0 as 0xffff. OSError(EINVAL) if the field lies outside the frame."""
    *_, start, offset = VNET.unpack(vnet)
    field = start + offset
    if field + 2 > len(frame):
        _refuse(errno.EINVAL, "offload_csum")
    out = bytearray(frame)
    _store16(out, field, csum(out[start:]) or CSUM_MANGLED_0)
    return bytes(out)


def gso_plan(frame, vnet) -> GsoPlan:
    """`ps_gso_plan`: how the GSO super-frame `frame` is cut as `vnet` says: TCPV4 (TCP over IPv4), TCPV6, or
    UDP_L4 (UDP over either, one datagram per segment) into segments of gso_size payload bytes.

    OSError(EOPNOTSUPP) for another GSO type (UFO), and for headers whose segments cannot be made right (an IPv4
    source route, an IPv6 AH, fragment header or routing header with segments left: see above). OSError(EINVAL)
    for a frame that is not what `vnet` says (the parser refuses it, with UDP lengths unchecked as for any GSO
    frame; it is a fragment, or not TCP/UDP over the type's IP version; gso_size is 0) and for segments too long
    for their IP length field. The payload is everything after the TCP/UDP header: the frame's size, not its IP
    length, says how much there is, as the socket buffer's length does for the kernel's GSO.
    """
    _flags, gso_type, _hdr_len, gso_size, _start, _offset = VNET.unpack(vnet)
    family = _GSO_FAMILIES.get(gso_type & consts.VNET_GSO_TYPE_MASK)
    if family is None:
        _refuse(errno.EOPNOTSUPP, "gso_plan")
    parsed = parse(frame, 0, 0, True)
    key = parsed.key
    if parsed.error != consts.PE_OK or not parsed.l4_ofs or key[_KEY_NW_FRAG] or not gso_size:
        _refuse(errno.EINVAL, "gso_plan")
    eth_types, proto = family
    eth_type = _load16(key, _KEY_ETH_TYPE)
    if eth_type not in eth_types or key[_KEY_NW_PROTO] != proto:
        _refuse(errno.EINVAL, "gso_plan")
    l4 = parsed.l4_ofs
    # The parser has checked that the whole TCP header (with its options) lies in the frame.
    hdr_size = l4 + ((frame[l4 + TCP_CTL_OFS] >> 4) * 4 if proto == IPPROTO_TCP else L4_HDR_MIN[IPPROTO_UDP])
    ipv4 = eth_type == consts.ETH_TYPE_IPV4
    supported = _ipv4_options_supported if ipv4 else _ipv6_headers_supported
    if not supported(frame, parsed.l3_ofs, l4):
        _refuse(errno.EOPNOTSUPP, "gso_plan")
    payload = len(frame) - hdr_size
    n_segs = -(-payload // gso_size) if payload else 1
    # The IP length field of the largest segment must be able to say how long it is (its UDP length is shorter).
    if hdr_size - parsed.l3_ofs + min(payload, gso_size) - (0 if ipv4 else IP6_HDR_LEN) > 0xFFFF:
        _refuse(errno.EINVAL, "gso_plan")
    return GsoPlan(parsed.l3_ofs, l4, hdr_size, gso_size, payload, n_segs, ipv4, proto)


def gso_segment(frame, plan: GsoPlan, index: int) -> bytes:
    """`ps_gso_segment`: segment `index` (< plan.n_segs) of `frame`: its headers, with the IP length, the IPv4 id
    (+ index) and header checksum, the TCP sequence number (+ the payload before it) and flags (FIN and PSH on the
    last segment only, CWR on the first only) or the UDP length, and a complete TCP/UDP checksum (0 as 0xffff);
    then its share of the payload."""
    l3, l4, hdr_size = plan.l3_ofs, plan.l4_ofs, plan.hdr_size
    offset = index * plan.seg_payload
    size = min(plan.payload - offset, plan.seg_payload)
    l4_size = hdr_size - l4 + size
    seg = bytearray(frame[:hdr_size])
    seg += frame[hdr_size + offset:hdr_size + offset + size]
    if plan.ipv4:
        ihl = (seg[l3] & 0xF) * 4
        _store16(seg, l3 + IP_TOT_LEN_OFS, l4 - l3 + l4_size)
        _store16(seg, l3 + IP_ID_OFS, _load16(seg, l3 + IP_ID_OFS) + index)
        _store16(seg, l3 + IP_CSUM_OFS, 0)
        _store16(seg, l3 + IP_CSUM_OFS, csum(seg[l3:l3 + ihl]))
    else:
        _store16(seg, l3 + IP6_PLEN_OFS, l4 - l3 - IP6_HDR_LEN + l4_size)
    if plan.proto == IPPROTO_TCP:
        seq = int.from_bytes(seg[l4 + TCP_SEQ_OFS:l4 + TCP_SEQ_OFS + 4], "big") + offset
        seg[l4 + TCP_SEQ_OFS:l4 + TCP_SEQ_OFS + 4] = (seq & 0xFFFFFFFF).to_bytes(4, "big")
        ctl = _load16(seg, l4 + TCP_CTL_OFS)
        if index + 1 < plan.n_segs:
            ctl &= ~(TCP_FIN | TCP_PSH)
        if index > 0:
            ctl &= ~TCP_CWR
        _store16(seg, l4 + TCP_CTL_OFS, ctl)
    else:
        _store16(seg, l4 + UDP_LEN_OFS, l4_size)
    field = l4 + L4_CSUM_OFS[plan.proto]
    _store16(seg, field, 0)
    check = csum(seg[l4:l4 + l4_size], _pseudo_sum(seg, l3, plan.ipv4, plan.proto, l4_size))
    _store16(seg, field, check or CSUM_MANGLED_0)
    return bytes(seg)


def gso_segments(frame, vnet) -> list[bytes]:
    """Every segment of the GSO super-frame `frame`, in order (`gso_plan`, then `gso_segment` for each); refused as
    `gso_plan` refuses."""
    plan = gso_plan(frame, vnet)
    return [gso_segment(frame, plan, k) for k in range(plan.n_segs)]
