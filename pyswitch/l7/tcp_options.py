"""The TCP options an L7 VIP negotiates on both halves of a spliced connection (RFC 9293, RFC 7323, RFC 2018).

The switch answers the client's SYN itself and later opens the backend side in the client's name; for the C
fast path to join the two with nothing but sequence and timestamp deltas, both halves must agree on MSS,
window scaling, SACK and timestamps.  This module reads the four from a segment and writes them in the order
Linux sends them, so a capture of the switch's SYN/ACK looks like a host's.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

EOL, NOP, MSS, WSCALE, SACK_PERMITTED, SACK, TIMESTAMPS = 0, 1, 2, 3, 4, 5, 8
MAX_WSCALE = 14                     # RFC 7323 2.3: a larger shift is used as 14


@dataclass(frozen=True)
class TcpOptions:
    mss: Optional[int] = None       # None: not sent (RFC 9293: 536 is then assumed)
    wscale: Optional[int] = None    # the sender's shift; None: no window scaling from this side
    sack_permitted: bool = False
    tsval: Optional[int] = None     # None: no timestamp option
    tsecr: int = 0


def parse(segment: bytes) -> TcpOptions:
    """The options of a TCP segment (header included); what is malformed ends the reading, as Linux's
    tcp_parse_options stops at a bad length."""
    header_len = (segment[12] >> 4) * 4
    data = segment[20:header_len]
    mss = wscale = tsval = None
    sack_permitted = False
    tsecr = 0
    i = 0
    while i < len(data):
        kind = data[i]
        if kind == EOL:
            break
        if kind == NOP:
            i += 1
            continue
        if i + 1 >= len(data) or data[i + 1] < 2 or i + data[i + 1] > len(data):
            break
        length = data[i + 1]
        body = data[i + 2:i + length]
        if kind == MSS and length == 4:
            mss = struct.unpack("!H", body)[0]
        elif kind == WSCALE and length == 3:
            wscale = min(body[0], MAX_WSCALE)
        elif kind == SACK_PERMITTED and length == 2:
            sack_permitted = True
        elif kind == TIMESTAMPS and length == 10:
            tsval, tsecr = struct.unpack("!II", body)
        i += length
    return TcpOptions(mss, wscale, sack_permitted, tsval, tsecr)


def build_syn(options: TcpOptions) -> bytes:
    """The options of a SYN or SYN/ACK, padded to 4 bytes: MSS, SACK-permitted with timestamps, window scale."""
    out = b""
    if options.mss is not None:
        out += struct.pack("!BBH", MSS, 4, options.mss)
    if options.sack_permitted and options.tsval is not None:
        out += struct.pack("!BBBBII", SACK_PERMITTED, 2, TIMESTAMPS, 10, options.tsval, options.tsecr)
    else:
        if options.sack_permitted:
            out += struct.pack("!BBBB", NOP, NOP, SACK_PERMITTED, 2)
        if options.tsval is not None:
            out += struct.pack("!BBBBII", NOP, NOP, TIMESTAMPS, 10, options.tsval, options.tsecr)
    if options.wscale is not None:
        out += struct.pack("!BBBB", NOP, WSCALE, 3, options.wscale)
    return out


def build_timestamps(tsval: int, tsecr: int) -> bytes:
    """The option block of a segment after the handshake when timestamps are in use: NOP, NOP, TS."""
    return struct.pack("!BBBBII", NOP, NOP, TIMESTAMPS, 10, tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)
