"""FRAME-SPEC: the small text `pyswitch trace` takes to describe one frame, and the frame it stands for.

    eth_src=02:00:00:00:00:11,eth_dst=02:00:00:00:00:12,vlan=10,ip_src=198.51.100.11,ip_dst=198.51.100.12,tcp_dst=80

Comma-separated `key=value` items and bare words; each key at most once.

    eth_src, eth_dst      MAC addresses (default 02:00:00:00:00:01 and ff:ff:ff:ff:ff:ff)
    vlan                  802.1Q VID 1..4094: the frame arrives tagged (default: untagged); vlan_pcp=0..7 with it
    ip_src, ip_dst        IPv4 addresses (default 192.0.2.1 and 192.0.2.2 when an IP protocol is given)
    ttl                   1..255 (default 64)
    tcp_src, tcp_dst      TCP ports (TCP is implied; default 40000 and 80)
    tcp_flags             '+'-separated names: syn, ack, fin, rst, psh (default syn)
    udp_src, udp_dst      UDP ports (UDP is implied; default 40000 and 53)
    icmp                  an ICMP echo request (the default when only ip_* are given)
    tcp, udp              the protocol with its default ports
    arp                   an ARP request: who has ip_dst, tell ip_src (arp_op=reply for a reply)
    payload               bytes of payload (zeros), 0..1400

Built with the slow path's own builders (pyswitch/pipeline/packets.py), so checksums are right and the frame is
what a real host would send.  IPv6 is not offered (yet).  Every mistake raises ValueError naming the key.
"""
from __future__ import annotations

import ipaddress
import struct

from . import consts
from .flowkey import mac_bytes
from .pipeline import packets as pk

DEFAULT_ETH_SRC = "02:00:00:00:00:01"
DEFAULT_ETH_DST = "ff:ff:ff:ff:ff:ff"
DEFAULT_IP_SRC = "192.0.2.1"
DEFAULT_IP_DST = "192.0.2.2"
DEFAULT_SPORT = 40000
MAX_PAYLOAD = 1400                  # the frame stays below a 1500-byte MTU
MAX_SPEC = 1024                     # a spec longer than this is a mistake, not a frame
TCP_FLAG_NAMES = {"fin": pk.TCP_FIN, "syn": pk.TCP_SYN, "rst": pk.TCP_RST, "psh": pk.TCP_PSH, "ack": pk.TCP_ACK}

VALUE_KEYS = ("eth_src", "eth_dst", "vlan", "vlan_pcp", "ip_src", "ip_dst", "ttl", "tcp_src", "tcp_dst",
              "tcp_flags", "udp_src", "udp_dst", "arp_op", "payload")
WORDS = ("icmp", "tcp", "udp", "arp")
TCP_KEYS = ("tcp_src", "tcp_dst", "tcp_flags")
UDP_KEYS = ("udp_src", "udp_dst")
IP_KEYS = ("ip_src", "ip_dst", "ttl")


class FrameSpecError(ValueError):
    """A FRAME-SPEC that does not describe a frame; the message names the key."""


def parse(text: str) -> dict:
    """The spec's items as {key: text} (bare words map to ""), checked for unknown and repeated keys."""
    if not isinstance(text, str) or not text.strip():
        raise FrameSpecError("frame spec is empty: give e.g. eth_dst=02:00:00:00:00:12,icmp")
    if len(text) > MAX_SPEC:
        raise FrameSpecError(f"frame spec is {len(text)} characters, at most {MAX_SPEC}")
    items: dict[str, str] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise FrameSpecError(f"frame spec {text!r}: an empty item (two commas in a row?)")
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq:
            if key not in WORDS:
                raise FrameSpecError(f"{key}: not a word of a frame spec (words: {', '.join(WORDS)}; "
                                     f"keys take a value: {', '.join(VALUE_KEYS)})")
            value = ""
        elif key not in VALUE_KEYS:
            raise FrameSpecError(f"{key}: unknown key (keys: {', '.join(VALUE_KEYS)}; words: {', '.join(WORDS)})")
        elif not value.strip():
            raise FrameSpecError(f"{key}: no value after '='")
        if key in items:
            raise FrameSpecError(f"{key}: given twice")
        items[key] = value.strip()
    _check_protocols(items)
    return items


def _check_protocols(items: dict) -> None:
    """At most one L4 protocol (or ARP), and no key that belongs to another one."""
    brought = {}                        # protocol -> the word or key that asks for it, in spec order
    for key in items:
        protocol = key if key in WORDS else "tcp" if key in TCP_KEYS else "udp" if key in UDP_KEYS else None
        if protocol is None:
            continue
        brought.setdefault(protocol, key)
        if len(brought) > 1:
            (first, first_key), (_, second_key) = list(brought.items())[:2]
            raise FrameSpecError(f"{second_key}: one protocol per frame, and {first_key} makes it {first}")
    protocols = list(brought)
    if "arp" in protocols:
        for key in ("ttl", "payload"):
            if key in items:
                raise FrameSpecError(f"{key}: an ARP frame has no {key}")
    elif "arp_op" in items:
        raise FrameSpecError("arp_op: only with arp")
    if "vlan_pcp" in items and "vlan" not in items:
        raise FrameSpecError("vlan_pcp: only with vlan")


def _int(items: dict, key: str, low: int, high: int, default: int) -> int:
    text = items.get(key)
    if text is None:
        return default
    try:
        value = int(text, 0)
    except ValueError:
        raise FrameSpecError(f"{key}: {text!r} is not a number") from None
    if not low <= value <= high:
        raise FrameSpecError(f"{key}: {value} is not in {low}..{high}")
    return value


def _mac(items: dict, key: str, default: str) -> bytes:
    text = items.get(key, default)
    try:
        mac = mac_bytes(text)
    except ValueError:
        raise FrameSpecError(f"{key}: {text!r} is not a MAC address (like 02:00:00:00:00:01)") from None
    return mac


def _ipv4(items: dict, key: str, default: str) -> bytes:
    text = items.get(key, default)
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise FrameSpecError(f"{key}: {text!r} is not an IPv4 address") from None


def _tcp_flags(items: dict) -> int:
    text = items.get("tcp_flags", "syn")
    flags = 0
    for name in text.lower().split("+"):
        bit = TCP_FLAG_NAMES.get(name.strip())
        if bit is None:
            raise FrameSpecError(f"tcp_flags: {name!r} is not a flag ({', '.join(TCP_FLAG_NAMES)}, joined by '+')")
        flags |= bit
    return flags


def build(text: str) -> bytes:
    """The frame `text` describes, as it would arrive on a port (tagged when vlan= is given)."""
    items = parse(text)
    eth_src = _mac(items, "eth_src", DEFAULT_ETH_SRC)
    eth_dst = _mac(items, "eth_dst", DEFAULT_ETH_DST)
    ip_src = _ipv4(items, "ip_src", DEFAULT_IP_SRC)
    ip_dst = _ipv4(items, "ip_dst", DEFAULT_IP_DST)
    payload = bytes(_int(items, "payload", 0, MAX_PAYLOAD, 0))
    if "arp" in items:
        op_text = items.get("arp_op", "request").lower()
        ops = {"request": pk.ARP_REQUEST, "reply": pk.ARP_REPLY}
        if op_text not in ops:
            raise FrameSpecError(f"arp_op: {op_text!r} is not request or reply")
        op = ops[op_text]
        target_mac = bytes(6) if op == pk.ARP_REQUEST else eth_dst
        eth_type, l3 = consts.ETH_TYPE_ARP, pk.arp(op, eth_src, ip_src, target_mac, ip_dst)
    elif any(k in items for k in ("tcp",) + TCP_KEYS):
        sport = _int(items, "tcp_src", 0, 0xFFFF, DEFAULT_SPORT)
        dport = _int(items, "tcp_dst", 0, 0xFFFF, 80)
        segment = pk.tcp(ip_src, ip_dst, sport, dport, 1, 0, _tcp_flags(items), payload)
        eth_type, l3 = consts.ETH_TYPE_IPV4, _ip(items, ip_src, ip_dst, pk.IP_PROTO_TCP, segment)
    elif any(k in items for k in ("udp",) + UDP_KEYS):
        sport = _int(items, "udp_src", 0, 0xFFFF, DEFAULT_SPORT)
        dport = _int(items, "udp_dst", 0, 0xFFFF, 53)
        datagram = pk.udp(ip_src, ip_dst, sport, dport, payload)
        eth_type, l3 = consts.ETH_TYPE_IPV4, _ip(items, ip_src, ip_dst, pk.IP_PROTO_UDP, datagram)
    elif "icmp" in items or any(k in items for k in IP_KEYS):
        message = pk.icmp(pk.ICMP_ECHO_REQUEST, 0, struct.pack("!HH", 0x7073, 1) + payload)
        eth_type, l3 = consts.ETH_TYPE_IPV4, _ip(items, ip_src, ip_dst, pk.IP_PROTO_ICMP, message)
    else:
        # Only Ethernet keys: an IPv4 ping is the commonest thing to ask about.
        message = pk.icmp(pk.ICMP_ECHO_REQUEST, 0, struct.pack("!HH", 0x7073, 1) + payload)
        eth_type, l3 = consts.ETH_TYPE_IPV4, pk.ipv4(ip_src, ip_dst, pk.IP_PROTO_ICMP, message)
    header = eth_dst + eth_src
    if "vlan" in items:
        vid = _int(items, "vlan", 1, 4094, 0)
        pcp = _int(items, "vlan_pcp", 0, 7, 0)
        header += struct.pack("!HH", consts.ETH_TYPE_VLAN, pcp << 13 | vid)
    frame = header + struct.pack("!H", eth_type) + l3
    return frame.ljust(60, b"\0")      # as a NIC pads a short frame


def _ip(items: dict, src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    return pk.ipv4(src, dst, proto, payload, ttl=_int(items, "ttl", 1, 255, pk.DEFAULT_TTL))
