"""SYN cookies for an L7 VIP: the switch answers a client's SYN without keeping anything (RFC 4987 3.6).

A client's SYN gets a SYN/ACK whose initial sequence number is the cookie; only the ACK that completes the
handshake, acknowledging cookie + 1, makes the switch keep state.  A flood of SYNs therefore costs no memory.
What the switch must remember of the SYN travels in the cookie:

    sequence number   bits 31-27: a counter of 64-second periods (mod 32); bits 26-24: the client's MSS as an
                      index into MSS_TABLE (the largest entry not above it); bits 23-0: a keyed hash of the
                      four-tuple, the counter and the index.  A cookie is good in its period and the next one.
    timestamp         (only when the client sends timestamps, as Linux does) the low 6 bits of the switch's
                      TSval: the client's window scale (15: none) and whether it permits SACK.  The client
                      echoes the TSval in every ACK's TSecr.  Without timestamps, window scaling and SACK are
                      not offered back (Linux's syncookies lose them the same way).

The hash is BLAKE2b keyed with a secret drawn at start, so cookies cannot be forged from outside and a
restarted switch refuses its predecessor's.
"""
from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass
from typing import Optional

MSS_TABLE = (536, 1220, 1360, 1400, 1440, 1452, 1460, 8960)
PERIOD_S = 64
NO_WSCALE = 15
TS_BITS = 5                         # low bits of the switch's TSval that carry the options
_SACK_BIT = 1 << 4


@dataclass(frozen=True)
class Cookie:
    """What a good cookie gives back about the client's SYN."""
    mss: int
    wscale: Optional[int]           # None: no window scaling (not offered, or no timestamps to carry it)
    sack_permitted: bool


class SynCookies:
    def __init__(self, secret: bytes | None = None):
        self._key = secret or secrets.token_bytes(32)

    def _hash(self, four_tuple: bytes, counter: int, mss_index: int) -> int:
        digest = hashlib.blake2b(four_tuple + bytes((counter, mss_index)), key=self._key, digest_size=4).digest()
        return struct.unpack("!I", digest)[0] & 0xFFFFFF

    def isn(self, four_tuple: bytes, client_mss: int, now: float) -> int:
        """The cookie for a SYN of `four_tuple` (client address, VIP, ports: any fixed byte string of the SYN)."""
        index = max((i for i, mss in enumerate(MSS_TABLE) if mss <= client_mss), default=0)
        counter = int(now // PERIOD_S) & 0x1F
        return (counter << 27) | (index << 24) | self._hash(four_tuple, counter, index)

    @staticmethod
    def tsval(now_ms: int, wscale: Optional[int], sack_permitted: bool) -> int:
        """The switch's TSval in its SYN/ACK: its millisecond clock with the options in its low bits."""
        bits = (NO_WSCALE if wscale is None else wscale) | (_SACK_BIT if sack_permitted else 0)
        return ((now_ms >> TS_BITS) << TS_BITS | bits) & 0xFFFFFFFF

    def check(self, four_tuple: bytes, ack: int, tsecr: Optional[int], now: float) -> Optional[Cookie]:
        """The SYN's options if `ack` (the client's acknowledgement number) is cookie + 1 from this period or
        the one before; `tsecr` is the ACK's echoed timestamp (None without timestamps)."""
        cookie = (ack - 1) & 0xFFFFFFFF
        counter, index, digest = cookie >> 27, (cookie >> 24) & 0x7, cookie & 0xFFFFFF
        current = int(now // PERIOD_S) & 0x1F
        if counter not in (current, (current - 1) & 0x1F) or self._hash(four_tuple, counter, index) != digest:
            return None
        if tsecr is None:
            return Cookie(MSS_TABLE[index], None, False)
        ws = tsecr & 0xF
        return Cookie(MSS_TABLE[index], None if ws == NO_WSCALE else ws, bool(tsecr & _SACK_BIT))
