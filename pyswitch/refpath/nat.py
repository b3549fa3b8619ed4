"""The NAT rewrites SET_IPV4_SRC/DST and SET_TP_SRC/DST: the twin of csrc/nat.c (docs/DATAPATH.md "NAT rewrites").

A rewrite writes one field and updates every checksum covering it incrementally (RFC 1624): the IPv4 header
checksum covers the addresses, the TCP/UDP checksum the addresses (through its pseudo-header) and the ports. A frame
whose L4 checksum the kernel will finish ("partial": vnet NEEDS_CSUM with csum_start at the L4 header) holds only
the pseudo-header sum, not complemented, in the checksum field: an address change is applied to that sum, a port
change leaves it alone (Linux's inet_proto_csum_replace4 for CHECKSUM_PARTIAL).
"""
from __future__ import annotations

from .. import consts
from .csum import csum_update16, csum_update32

ETH_HDR_LEN = 14
MAX_IPV4_TAGS = 2           # VLAN tags skipped to find IPv4, as the parser does
IP4_MIN_HDR_LEN = 20
IP_FRAG_OFS = 6             # flags and fragment offset
IP_PROTO_OFS = 9
IP_CSUM_OFS = 10
IP_FRAG_OFF_MASK = 0x1FFF   # the fragment offset, in 8-byte units
IPV4_SRC_OFS = 12           # the address fields in the IPv4 header
IPV4_DST_OFS = 16
TP_SRC_OFS = 0              # the port fields in the TCP and UDP headers
TP_DST_OFS = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
L4_HDR = {IPPROTO_TCP: (20, 16), IPPROTO_UDP: (8, 6)}     # protocol: (header bytes, checksum offset)
UDP_CSUM_MANGLED_0 = 0xFFFF  # a computed UDP checksum of 0 is sent as this: 0 means "none" (RFC 768)
_VLAN_TPIDS = (consts.ETH_TYPE_VLAN, consts.ETH_TYPE_QINQ)


def ipv4_offset(frame) -> int:
    """The offset of a whole IPv4 header behind at most two tags, or 0 (ROUTE's step 1 too)."""
    size = len(frame)
    if size < ETH_HDR_LEN:
        return 0
    type_ofs = 12
    eth_type = frame[12] << 8 | frame[13]
    for _ in range(MAX_IPV4_TAGS):
        if eth_type not in _VLAN_TPIDS:
            break
        type_ofs += 4
        if type_ofs + 2 > size:
            return 0
        eth_type = frame[type_ofs] << 8 | frame[type_ofs + 1]
    l3 = type_ofs + 2
    if eth_type != consts.ETH_TYPE_IPV4 or size < l3 + IP4_MIN_HDR_LEN:
        return 0
    version, ihl = frame[l3] >> 4, frame[l3] & 0xF
    if version != 4 or ihl < 5 or l3 + ihl * 4 > size:
        return 0
    return l3


def _locate(frame, vnet):
    """(l3, l4, l4 checksum offset, is UDP, partial); l3 0 when not IPv4, l4 None when L4 is not rewritten.

    L4 is rewritten in a TCP or UDP packet that is not a later fragment and holds the whole TCP (20 bytes) or UDP
    (8 bytes) header within the frame.
    """
    l3 = ipv4_offset(frame)
    if not l3:
        return 0, None, 0, False, False
    frag = frame[l3 + IP_FRAG_OFS] << 8 | frame[l3 + IP_FRAG_OFS + 1]
    proto = frame[l3 + IP_PROTO_OFS]
    if frag & IP_FRAG_OFF_MASK or proto not in L4_HDR:
        return l3, None, 0, False, False
    size, csum_ofs = L4_HDR[proto]
    l4 = l3 + (frame[l3] & 0xF) * 4
    if l4 + size > len(frame):
        return l3, None, 0, False, False
    partial = bool(vnet.flags & consts.VNET_F_NEEDS_CSUM) and vnet.csum_start == l4
    return l3, l4, l4 + csum_ofs, proto == IPPROTO_UDP, partial


def _load16(frame, at: int) -> int:
    return frame[at] << 8 | frame[at + 1]


def _store16(frame, at: int, value: int) -> None:
    frame[at:at + 2] = (value & 0xFFFF).to_bytes(2, "big")


def _store_l4_csum(frame, at: int, udp: bool, check: int) -> None:
    """A full-mode checksum; a UDP result of 0 is stored as 0xFFFF."""
    _store16(frame, at, UDP_CSUM_MANGLED_0 if udp and check == 0 else check)


def ipv4_set_addr(frame: bytearray, vnet, field_ofs: int, addr) -> None:
    """Write the 4 bytes `addr` into the IPv4 address at `field_ofs` (IPV4_SRC_OFS / IPV4_DST_OFS) and update the
    IPv4 header checksum and, when L4 is rewritable, the TCP/UDP checksum."""
    l3, l4, csum_at, udp, partial = _locate(frame, vnet)
    if not l3:
        return
    at = l3 + field_ofs
    old = int.from_bytes(frame[at:at + 4], "big")
    new = int.from_bytes(addr, "big")
    frame[at:at + 4] = addr
    _store16(frame, l3 + IP_CSUM_OFS, csum_update32(_load16(frame, l3 + IP_CSUM_OFS), old, new))
    if l4 is None:
        return
    check = _load16(frame, csum_at)
    if partial:
        _store16(frame, csum_at, ~csum_update32(~check & 0xFFFF, old, new))
    elif not (udp and check == 0):
        _store_l4_csum(frame, csum_at, udp, csum_update32(check, old, new))


def l4_set_port(frame: bytearray, vnet, field_ofs: int, port: int) -> None:
    """Write `port` into the TCP/UDP port at `field_ofs` (TP_SRC_OFS / TP_DST_OFS), if L4 is rewritable, and
    update the checksum unless the kernel completes it (partial)."""
    _l3, l4, csum_at, udp, partial = _locate(frame, vnet)
    if l4 is None:
        return
    at = l4 + field_ofs
    old = _load16(frame, at)
    _store16(frame, at, port)
    check = _load16(frame, csum_at)
    if not partial and not (udp and check == 0):
        _store_l4_csum(frame, csum_at, udp, csum_update16(check, old, port & 0xFFFF))
