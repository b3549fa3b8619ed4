"""VRRPv3 advertisements for IPv4 (RFC 5798 section 5): encoding, decoding and the IPv4 packet around them.

An advertisement is an 8-byte header followed by the virtual addresses (section 5.2):

     0                   1                   2                   3
    |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
    |(rsvd) |     Max Adver Int     |          Checksum             |
    |                       IPvX Address(es)                        |

Version is 3 and type 1 (the only type), so the first byte is always 0x31.  The maximum advertisement
interval is in centiseconds (12 bits: 10 ms to 40.95 s).  VRRPv3 has no authentication (RFC 5798 dropped
VRRPv2's): what protects a group is the TTL rule of section 7.1, an advertisement must arrive with TTL 255,
which a packet that crossed a router cannot have.

The checksum (section 5.2.8) is the Internet checksum of the IPv4 pseudo-header (source, destination, zero,
protocol 112, VRRP length) followed by the VRRP message, as for UDP; VRRPv2 summed the message alone, which is
why a v2 implementation's checksum never verifies here.  A receiver sums the message exactly as received,
bytes after the last address included, so trailing bytes that some implementations send do not break it.

Adverts go to 224.0.0.18 (section 5.1.1.2) from the sender's primary address, with TTL 255 and TOS 0xC0
(network control, as keepalived sends them, so that queues under load keep them).  Unicast peers (for
networks without multicast) are a keepalived extension, accepted by `parse_ip_packet(..., unicast_ok=True)`.
Nothing here does I/O: the caller owns the sockets or the data path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pyswitch.refpath.csum import csum

IP_PROTO_VRRP = 112
GROUP_ADDRESS = bytes([224, 0, 0, 18])      # RFC 5798 5.1.1.2: the IPv4 multicast group of VRRP
GROUP_MAC = bytes.fromhex("01005e000012")   # the Ethernet address of that group (RFC 1112 6.4)
TTL = 255                                   # sent, and required on receipt (RFC 5798 7.1)
VERSION = 3
TYPE_ADVERTISEMENT = 1
MAX_INTERVAL_CS = 4095                      # the field is 12 bits wide

HEADER_LEN = 8
IP_HEADER_LEN = 20                          # what ip_packet sends: no options
TOS_NETWORK_CONTROL = 0xC0                  # DSCP CS6, as keepalived sends
_MAX_ADDRESSES = 255                        # the count field is one byte
_IP_MF = 0x2000                             # "more fragments" flag in the flags/fragment offset field
_IP_OFFSET = 0x1FFF                         # fragment offset mask


class VrrpError(ValueError):
    """A malformed or invalid advertisement; the message says why."""


def virtual_mac(group: int) -> bytes:
    """The virtual router's MAC address for IPv4, 00:00:5e:00:01:<VRID> (RFC 5798 7.3)."""
    if not 1 <= group <= 255:
        raise ValueError(f"VRID {group} is not in 1..255")
    return bytes([0x00, 0x00, 0x5E, 0x00, 0x01, group])


@dataclass(frozen=True)
class Advert:
    """The fields of one advertisement.  Checked on construction, so an Advert always encodes."""

    group: int                      # VRID, 1..255
    priority: int                   # 0 (the master resigns) .. 255 (the address owner)
    interval_cs: int                # maximum advertisement interval, centiseconds, 1..4095
    addresses: tuple[bytes, ...]    # the virtual IPv4 addresses, 4 bytes each

    def __post_init__(self) -> None:
        # Accept any sequence but store a tuple, so that Adverts stay hashable and compare equal to decoded ones.
        object.__setattr__(self, "addresses", tuple(self.addresses))
        if not 1 <= self.group <= 255:
            raise ValueError(f"VRID {self.group} is not in 1..255")
        if not 0 <= self.priority <= 255:
            raise ValueError(f"priority {self.priority} is not in 0..255")
        if not 1 <= self.interval_cs <= MAX_INTERVAL_CS:
            raise ValueError(f"advertisement interval {self.interval_cs} cs is not in 1..{MAX_INTERVAL_CS}")
        if not 1 <= len(self.addresses) <= _MAX_ADDRESSES:
            raise ValueError(f"{len(self.addresses)} addresses: an advertisement carries 1..{_MAX_ADDRESSES}")
        for address in self.addresses:
            _check_address(address, "virtual address")


def _check_address(address: bytes, what: str) -> None:
    if not isinstance(address, (bytes, bytearray)) or len(address) != 4:
        raise ValueError(f"{what} {address!r} is not 4 bytes")


def interval_cs(seconds: float) -> int:
    """`seconds` as the centiseconds of the interval field: rounded, and clamped to 1..4095."""
    if math.isnan(seconds):
        raise ValueError("advertisement interval is NaN")
    centiseconds = seconds * 100
    # Clamp before rounding, so that an infinite interval clamps instead of failing in round().
    if centiseconds >= MAX_INTERVAL_CS:
        return MAX_INTERVAL_CS
    return round(centiseconds) if centiseconds > 1 else 1


def _pseudo_header_sum(src: bytes, dst: bytes, length: int) -> int:
    # The pseudo-header read as one big-endian integer: csum() only needs its value modulo 0xffff, and
    # 2**16 = 1 (mod 0xffff), so adding this integer is the same as summing its 16-bit words.
    return int.from_bytes(bytes(src) + bytes(dst) + bytes([0, IP_PROTO_VRRP]) + length.to_bytes(2, "big"), "big")


def encode(advert: Advert, src: bytes, dst: bytes = GROUP_ADDRESS) -> bytes:
    """The VRRP message of `advert` sent from `src` to `dst` (the checksum covers both addresses)."""
    _check_address(src, "source address")
    _check_address(dst, "destination address")
    body = b"".join(advert.addresses)
    header = bytes([VERSION << 4 | TYPE_ADVERTISEMENT, advert.group, advert.priority, len(advert.addresses)])
    header += (advert.interval_cs & 0x0FFF).to_bytes(2, "big")     # the 4 reserved bits stay 0
    message = header + b"\x00\x00" + body
    check = csum(message, _pseudo_header_sum(src, dst, len(message)))
    return message[:6] + check.to_bytes(2, "big") + message[8:]


def decode(message: bytes, src: bytes, dst: bytes = GROUP_ADDRESS) -> Advert:
    """The advertisement in `message`, received from `src` at `dst`; VrrpError if it is malformed or invalid.

    Checks in the order of RFC 5798 7.1: version (and type, 5.2.2), length, checksum, then the fields.  Bytes
    after the last address are ignored but still summed: the sender's checksum covered them too.  `src` and
    `dst` must be the packet's real addresses, which the checksum covers through the pseudo-header.
    """
    _check_address(src, "source address")
    _check_address(dst, "destination address")
    message = bytes(message)
    if len(message) < HEADER_LEN:
        raise VrrpError(f"VRRP message of {len(message)} bytes is shorter than its {HEADER_LEN}-byte header")
    version, kind = message[0] >> 4, message[0] & 0x0F
    if version != VERSION:
        raise VrrpError(f"VRRP version {version}, not {VERSION}")
    if kind != TYPE_ADVERTISEMENT:
        raise VrrpError(f"VRRP type {kind}, not {TYPE_ADVERTISEMENT} (advertisement)")
    group, priority, count = message[1], message[2], message[3]
    if count == 0:
        raise VrrpError("VRRP advertisement carries no address")
    if len(message) < HEADER_LEN + 4 * count:
        raise VrrpError(f"VRRP message of {len(message)} bytes is too short for its {count} addresses")
    # A correct checksum makes the sum over everything, checksum field included, 0xffff: csum() gives 0.
    if csum(message, _pseudo_header_sum(src, dst, len(message))) != 0:
        raise VrrpError("VRRP checksum is wrong")
    if group == 0:
        raise VrrpError("VRID 0 is invalid")
    interval = int.from_bytes(message[4:6], "big") & 0x0FFF       # receivers ignore the reserved bits
    if interval == 0:
        raise VrrpError("advertisement interval of 0")
    addresses = tuple(message[HEADER_LEN + 4 * i:HEADER_LEN + 4 * i + 4] for i in range(count))
    return Advert(group=group, priority=priority, interval_cs=interval, addresses=addresses)


def ip_packet(advert: Advert, src: bytes, dst: bytes = GROUP_ADDRESS) -> bytes:
    """A whole IPv4 packet carrying `advert` from `src`: to 224.0.0.18 unless a unicast peer `dst` is given."""
    payload = encode(advert, src, dst)
    header = bytes([0x45, TOS_NETWORK_CONTROL]) + (IP_HEADER_LEN + len(payload)).to_bytes(2, "big")
    header += bytes([0, 0, 0, 0, TTL, IP_PROTO_VRRP, 0, 0]) + bytes(src) + bytes(dst)   # id 0, no DF, no MF
    check = csum(header)
    return header[:10] + check.to_bytes(2, "big") + header[12:] + payload


def parse_ip_packet(packet: bytes, *, unicast_ok: bool = False) -> tuple[bytes, Advert]:
    """(source address, advert) from an IPv4 packet; VrrpError if it is not a valid advertisement.

    `packet` starts at the IPv4 header and may carry Ethernet padding: the IP total length says where the
    advertisement ends.  Unless `unicast_ok`, only packets to 224.0.0.18 are accepted.
    """
    packet = bytes(packet)
    if len(packet) < IP_HEADER_LEN:
        raise VrrpError(f"packet of {len(packet)} bytes is shorter than an IPv4 header")
    if packet[0] >> 4 != 4:
        raise VrrpError(f"IP version {packet[0] >> 4}, not 4")
    header_len = (packet[0] & 0x0F) * 4
    if header_len < IP_HEADER_LEN:
        raise VrrpError(f"IPv4 header length {header_len} is less than {IP_HEADER_LEN}")
    total = int.from_bytes(packet[2:4], "big")
    if total < header_len or total > len(packet):
        raise VrrpError(f"IPv4 total length {total} does not fit a {header_len}-byte header in {len(packet)} bytes")
    # The kernel would have dropped a corrupt header; a userspace switch reads raw frames and must do it itself.
    if csum(packet[:header_len]) != 0:
        raise VrrpError("IPv4 header checksum is wrong")
    if int.from_bytes(packet[6:8], "big") & (_IP_MF | _IP_OFFSET):
        raise VrrpError("IPv4 fragment: an advertisement is never fragmented")
    if packet[9] != IP_PROTO_VRRP:
        raise VrrpError(f"IP protocol {packet[9]}, not {IP_PROTO_VRRP} (VRRP)")
    if packet[8] != TTL:
        raise VrrpError(f"TTL {packet[8]}, not {TTL}: the advertisement crossed a router (RFC 5798 7.1)")
    src, dst = packet[12:16], packet[16:20]
    if dst != GROUP_ADDRESS and not unicast_ok:
        raise VrrpError(f"destination {'.'.join(map(str, dst))} is not 224.0.0.18 and unicast peers are not allowed")
    return src, decode(packet[header_len:total], src, dst)
