"""Frames the switch itself sends: ARP requests and replies, ICMP echo replies and errors.

Built with struct, checksummed with the same one's-complement sum the fast path uses
(the twin's pure function, so the slow path needs no compiled code).
"""
from __future__ import annotations

import struct

from .. import consts
from ..refpath.csum import csum

BROADCAST = b"\xff" * 6
ARP_REQUEST = 1
ARP_REPLY = 2
ICMP_ECHO_REPLY = 0
ICMP_UNREACHABLE = 3            # codes: 0 net, 1 host, 3 port
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11         # code 0: TTL exceeded in transit
ICMP_QUOTE_MAX = 576 - 20 - 8   # RFC 1812 4.3.2.3: quote as much as fits in 576 bytes
IP_PROTO_ICMP = 1
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
DEFAULT_TTL = 64


def ethernet(dst: bytes, src: bytes, eth_type: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", eth_type) + payload


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """An Ethernet/IPv4 ARP packet (without the Ethernet header)."""
    return struct.pack("!HHBBH6s4s6s4s", 1, consts.ETH_TYPE_IPV4, 6, 4, op, sha, spa, tha, tpa)


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int = DEFAULT_TTL, ident: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, ttl, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", csum(header)) + header[12:] + payload


def icmp(icmp_type: int, code: int, rest: bytes) -> bytes:
    """An ICMP message; `rest` is everything after the checksum (identifier/sequence or unused, then data)."""
    message = struct.pack("!BBH", icmp_type, code, 0) + rest
    return message[:2] + struct.pack("!H", csum(message)) + message[4:]


def icmp_error(icmp_type: int, code: int, offending_ip: bytes) -> bytes:
    """Time Exceeded / Destination Unreachable quoting the offending IP packet (RFC 792, RFC 1812)."""
    return icmp(icmp_type, code, bytes(4) + offending_ip[:ICMP_QUOTE_MAX])


def ip_header_fields(ip_packet: bytes) -> tuple[int, int, bytes, bytes]:
    """(header length, protocol, source, destination) of an IPv4 packet that the parser already checked."""
    ihl = (ip_packet[0] & 0x0F) * 4
    return ihl, ip_packet[9], ip_packet[12:16], ip_packet[16:20]


def strip_ethernet(frame: bytes) -> tuple[int, bytes]:
    """(EtherType, payload) of a frame, skipping up to two VLAN tags."""
    offset = 12
    eth_type = struct.unpack_from("!H", frame, offset)[0]
    for _ in range(2):
        if eth_type not in (consts.ETH_TYPE_VLAN, consts.ETH_TYPE_QINQ):
            break
        offset += 4
        eth_type = struct.unpack_from("!H", frame, offset)[0]
    return eth_type, frame[offset + 2:]


def ipv4_parts(ip_packet: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(protocol, source, destination, payload) of a whole IPv4 packet, trimmed to its total length.

    ValueError if it is not one: truncated, lying about its lengths, or a fragment (the slow path
    reassembles nothing).
    """
    if len(ip_packet) < 20 or ip_packet[0] >> 4 != 4:
        raise ValueError("not an IPv4 packet")
    ihl = (ip_packet[0] & 0x0F) * 4
    total, fragment = struct.unpack_from("!H2xH", ip_packet, 2)
    if ihl < 20 or not ihl <= total <= len(ip_packet):
        raise ValueError("IPv4 lengths do not fit the packet")
    if fragment & 0x3FFF:
        raise ValueError("IPv4 fragment")
    return ip_packet[9], ip_packet[12:16], ip_packet[16:20], ip_packet[ihl:total]


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"",
        window: int = 65535, options: bytes = b"") -> bytes:
    """A TCP segment (no IP header), checksummed over the IPv4 pseudo-header; `options` come padded to 4 bytes."""
    if len(options) % 4:
        raise ValueError(f"TCP options are {len(options)} bytes, not a multiple of 4")
    offset = (5 + len(options) // 4) << 4
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset, flags, window, 0, 0) + options + payload
    pseudo_header = struct.pack("!4s4sxBH", src, dst, IP_PROTO_TCP, len(segment))
    return segment[:16] + struct.pack("!H", csum(pseudo_header + segment)) + segment[18:]


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP datagram (no IP header), checksummed over the IPv4 pseudo-header (0 is sent as 0xFFFF)."""
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo_header = struct.pack("!4s4sxBH", src, dst, IP_PROTO_UDP, len(datagram))
    check = csum(pseudo_header + datagram) or 0xFFFF
    return datagram[:6] + struct.pack("!H", check) + datagram[8:]


def udp_fields(datagram: bytes) -> tuple[int, int, bytes]:
    """(source port, destination port, payload) of a UDP datagram; ValueError if its length does not fit."""
    if len(datagram) < 8:
        raise ValueError("UDP datagram shorter than 8 bytes")
    sport, dport, length = struct.unpack_from("!HHH", datagram)
    if not 8 <= length <= len(datagram):
        raise ValueError("UDP length does not fit the datagram")
    return sport, dport, datagram[8:length]


def tcp_fields(segment: bytes) -> tuple[int, int, int, int, int, int, bytes]:
    """(source port, destination port, seq, ack, flags, window, payload) of a TCP segment.

    ValueError if the segment is shorter than its header says.
    """
    if len(segment) < 20:
        raise ValueError("TCP segment shorter than 20 bytes")
    sport, dport, seq, ack, offset, flags, window = struct.unpack_from("!HHIIBBH", segment)
    header_len = (offset >> 4) * 4
    if not 20 <= header_len <= len(segment):
        raise ValueError("TCP data offset does not fit the segment")
    return sport, dport, seq, ack, flags, window, segment[header_len:]


def icmp_error_quote(message: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(protocol, source, destination, first 8 payload bytes) of the packet an ICMP error quotes.

    ValueError if the quote is shorter than its IP header plus the 8 bytes RFC 792 requires.
    """
    quote = message[8:]
    ihl = (quote[0] & 0x0F) * 4 if quote else 0
    if ihl < 20 or len(quote) < ihl + 8:
        raise ValueError("ICMP error quotes less than an IP header and 8 bytes")
    return quote[9], quote[12:16], quote[16:20], quote[ihl:ihl + 8]
