"""The rewrite of one segment of a spliced TCP connection: the twin of csrc/splice.c (docs/L7.md).

Sequence numbers move by the sender's delta; the acknowledgement number and SACK edges, which name the receiver's
bytes, by the receiver's; TSval (the sender's clock) and TSecr (the receiver's, echoed) by theirs; all modulo 2**32.
Each changed field is folded into the TCP checksum through the aligned 16-bit words that cover it (options need not
be 4-byte aligned); a frame whose checksum the kernel completes ("partial") needs no update for header words, only
for the addresses of its pseudo-header, which nat.py does.
"""
from __future__ import annotations

from .. import consts
from ..datapath_types import Splice, SpliceResult, SpliceStats
from .actions import Vnet, _vnet_bytes
from .csum import csum_update16
from .nat import IPPROTO_TCP, IPV4_DST_OFS, IPV4_SRC_OFS, TP_DST_OFS, TP_SRC_OFS, ipv4_offset, ipv4_set_addr, \
    l4_set_port
from .offload import VNET

IP_FRAG_OFS = 6
IP_PROTO_OFS = 9
IP_FRAG_OFF_MASK = 0x1FFF
TCP_HDR_LEN = 20
TCP_SEQ_OFS = 4
TCP_ACK_OFS = 8
TCP_CTL_OFS = 12
TCP_CSUM_OFS = 16
TCP_FLAG_ACK = 0x10
TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_SACK = 5
TCPOPT_TIMESTAMP = 8
TCPOLEN_TIMESTAMP = 10
TCPOLEN_SACK_BLOCK = 8
SACK_MAX_BLOCKS = 4         # 2 + 4 * 8 = 34 bytes: the most the 40 option bytes hold
_MASK32 = 0xFFFFFFFF


def _load16(frame, at: int) -> int:
    return frame[at] << 8 | frame[at + 1]


def _add32(frame, tcp: int, ofs: int, delta: int, partial: bool) -> None:
    """Add `delta` to the 32-bit field at `tcp + ofs` and fold every changed word covering it into the checksum."""
    delta &= _MASK32
    if not delta:
        return
    at = tcp + ofs
    start, end = tcp + (ofs & ~1), tcp + ((ofs + 5) & ~1)
    old = bytes(frame[start:end])
    frame[at:at + 4] = ((int.from_bytes(frame[at:at + 4], "big") + delta) & _MASK32).to_bytes(4, "big")
    if partial:
        return
    check = _load16(frame, tcp + TCP_CSUM_OFS)
    for w in range(start, end, 2):
        check = csum_update16(check, _load16(old, w - start), _load16(frame, w))
    frame[tcp + TCP_CSUM_OFS:tcp + TCP_CSUM_OFS + 2] = check.to_bytes(2, "big")


def _options(frame, tcp: int, hdr_len: int):
    """The (offset, kind, length) of every option but NOP up to EOL, or None if one is malformed: a length below 2
    or past the header, a SACK not of 1-4 whole blocks, a timestamp not of 10 bytes."""
    found = []
    ofs = TCP_HDR_LEN
    while ofs < hdr_len:
        kind = frame[tcp + ofs]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            ofs += 1
            continue
        if ofs + 2 > hdr_len:
            return None
        length = frame[tcp + ofs + 1]
        if length < 2 or ofs + length > hdr_len:
            return None
        if kind == TCPOPT_SACK and ((length - 2) % TCPOLEN_SACK_BLOCK or
                                    not 1 <= (length - 2) // TCPOLEN_SACK_BLOCK <= SACK_MAX_BLOCKS):
            return None
        if kind == TCPOPT_TIMESTAMP and length != TCPOLEN_TIMESTAMP:
            return None
        found.append((ofs, kind, length))
        ofs += length
    return found


def _check_addresses(splice: Splice) -> None:
    """An address is 4 bytes (fastpath.py raises the same ValueError)."""
    for name in ("src", "dst"):
        value = getattr(splice, name)
        if value is not None and len(value) != 4:
            raise ValueError(f"Splice.{name}: an IPv4 address is 4 bytes, not {len(value)}")


def _segment(frame):
    """(result, tcp, hdr_len) of the TCP segment in `frame` (`segment_find`): SPLICE_OK with the TCP header's
    offset and length, or SPLICE_NOT_TCP / SPLICE_BAD_HEADER (then 0, 0) for a frame that cannot be rewritten."""
    l3 = ipv4_offset(frame)
    if (not l3 or frame[l3 + IP_PROTO_OFS] != IPPROTO_TCP
            or _load16(frame, l3 + IP_FRAG_OFS) & IP_FRAG_OFF_MASK
            or l3 + (frame[l3] & 0xF) * 4 + TCP_HDR_LEN > len(frame)):
        return consts.SPLICE_NOT_TCP, 0, 0
    tcp = l3 + (frame[l3] & 0xF) * 4
    hdr_len = (frame[tcp + TCP_CTL_OFS] >> 4) * 4
    if hdr_len < TCP_HDR_LEN or tcp + hdr_len > len(frame):
        return consts.SPLICE_BAD_HEADER, 0, 0
    return consts.SPLICE_OK, tcp, hdr_len


def tcp_splice_check(frame) -> int:
    """`ps_tcp_splice_check`: the result code tcp_splice_rewrite would give `frame` (with any splice), reading
    only: what LB asks of a spliced connection's segment before it forwards it."""
    result, tcp, hdr_len = _segment(frame)
    if result != consts.SPLICE_OK:
        return result
    return consts.SPLICE_OK if _options(frame, tcp, hdr_len) is not None else consts.SPLICE_BAD_OPTIONS


def tcp_splice_rewrite(frame, vnet, splice: Splice) -> SpliceResult:
    """`ps_tcp_splice_rewrite`: `frame` (an Ethernet frame) rewritten for one direction of a spliced connection,
    with the result code (consts.SPLICE_*) and what was counted. `vnet`: 10 bytes or None."""
    _check_addresses(splice)
    out = bytearray(frame)
    vnet = _vnet_bytes(vnet) if vnet is not None else bytes(consts.VNET_HDR_SIZE)
    flags, _gso, _hdr_len, _gso_size, csum_start, _csum_offset = VNET.unpack(vnet)
    result, tcp, hdr_len = _segment(out)
    if result == consts.SPLICE_NOT_TCP:
        return SpliceResult(result, bytes(out), SpliceStats(not_tcp=1))
    if result == consts.SPLICE_BAD_HEADER:
        return SpliceResult(result, bytes(out), SpliceStats(bad_header=1))
    partial = bool(flags & consts.VNET_F_NEEDS_CSUM) and csum_start == tcp

    # The addresses and ports first, as nat/fullnat write them (nat.py keeps the IPv4 and pseudo-header sums).
    view = Vnet(vnet)
    if splice.src is not None:
        ipv4_set_addr(out, view, IPV4_SRC_OFS, splice.src)
    if splice.dst is not None:
        ipv4_set_addr(out, view, IPV4_DST_OFS, splice.dst)
    if splice.sport is not None:
        l4_set_port(out, view, TP_SRC_OFS, splice.sport)
    if splice.dport is not None:
        l4_set_port(out, view, TP_DST_OFS, splice.dport)

    # The acknowledgement number and TSecr mean something only with ACK set (RFC 7323 section 3.2).
    ack = bool(out[tcp + TCP_CTL_OFS + 1] & TCP_FLAG_ACK)
    _add32(out, tcp, TCP_SEQ_OFS, splice.seq_delta, partial)
    if ack:
        _add32(out, tcp, TCP_ACK_OFS, splice.ack_delta, partial)
    options = _options(out, tcp, hdr_len)
    if options is None:
        return SpliceResult(consts.SPLICE_BAD_OPTIONS, bytes(out), SpliceStats(bad_options=1))
    sack_blocks = timestamps = 0
    for ofs, kind, length in options:
        if kind == TCPOPT_SACK:
            for edge in range(ofs + 2, ofs + length, 4):
                _add32(out, tcp, edge, splice.ack_delta, partial)
            sack_blocks += (length - 2) // TCPOLEN_SACK_BLOCK
        elif kind == TCPOPT_TIMESTAMP and splice.timestamps:
            _add32(out, tcp, ofs + 2, splice.tsval_delta, partial)
            if ack:
                _add32(out, tcp, ofs + 6, splice.tsecr_delta, partial)
            timestamps += 1
    return SpliceResult(consts.SPLICE_OK, bytes(out),
                        SpliceStats(rewritten=1, sack_blocks=sack_blocks, timestamps=timestamps))
